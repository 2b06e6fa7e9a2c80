//! Hot primitives, each with its throughput: HTTP request parsing, the realtime REST handler
//! over a snapshot, value-fragment rendering for a 50-point channel, WebSocket message
//! parsing, frame assembly for a 10-channel subscription, and one tick of subscription
//! matching + frame building for 10k clients (same subscription and mixed).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use voltage_gateway::config::Config;
use voltage_gateway::http::{parse_request, Limits, Parsed};
use voltage_gateway::model::{ChannelId, DataType, PointId, Value};
use voltage_gateway::site::{ChannelState, DependencyHealth, Snapshot, TypeState};
use voltage_gateway::wire::values::values as render_values;

// The same allocator as the binary, so allocation costs are the ones production pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REQUEST: &[u8] = b"GET /api/channels/1001/realtime?data_type=T HTTP/1.1\r\nHost: 127.0.0.1:6005\r\nUser-Agent: dashboard/1.0\r\nAccept: application/json\r\nConnection: keep-alive\r\n\r\n";

fn points(n: u32) -> Vec<(PointId, Value)> {
    (1..=n)
        .map(|i| (i, Value::from_redis(&format!("{}.{}", 200 + i, i % 10))))
        .collect()
}

fn http_parse(c: &mut Criterion) {
    let limits = Limits {
        max_head_bytes: 16384,
        max_headers: 64,
        max_body_bytes: 65536,
    };
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Bytes(REQUEST.len() as u64));
    g.bench_function("parse_request", |b| {
        b.iter(|| match parse_request(black_box(REQUEST), &limits) {
            Parsed::Complete(r, n) => black_box((r, n)),
            _ => unreachable!(),
        })
    });
    g.finish();
}

fn realtime_handler(c: &mut Criterion) {
    let config = Config::default();
    let mut snap = Snapshot {
        loaded: true,
        ..Snapshot::default()
    };
    for id in 1..=1000 {
        let mut ch = ChannelState::default();
        ch.types[0] = Some(Arc::new(TypeState::new(1_736_755_800, points(20))));
        snap.channels.insert(ChannelId(id), ch);
    }
    let redis = DependencyHealth {
        healthy: true,
        message: String::new(),
    };
    let req = match parse_request(
        REQUEST,
        &Limits {
            max_head_bytes: 16384,
            max_headers: 64,
            max_body_bytes: 0,
        },
    ) {
        Parsed::Complete(r, _) => r,
        _ => unreachable!(),
    };
    let mut g = c.benchmark_group("api");
    g.throughput(Throughput::Elements(1));
    let alarms = voltage_gateway::alarm::ActiveAlarms::default();
    let auth = voltage_gateway::auth::Auth::new(&config.auth, &[7; 32]);
    let catalog = voltage_gateway::catalog::Catalog::default();
    let principal =
        voltage_gateway::auth::Principal::anonymous(Some(voltage_gateway::auth::Role::Viewer));
    g.bench_function("realtime_20_points", |b| {
        b.iter(|| {
            // As a connection builds it per request.
            let view = voltage_gateway::api::View::new(
                &snap, &redis, &config, &alarms, &catalog, &principal, &auth,
            );
            black_box(voltage_gateway::api::handle(&req, &view, 1_754_994_600_123))
        })
    });
    g.finish();
}

fn fragment(c: &mut Criterion) {
    let pts = points(50);
    let mut g = c.benchmark_group("fragment");
    g.throughput(Throughput::Elements(50));
    g.bench_function("render_50_points", |b| {
        b.iter(|| black_box(render_values(black_box(&pts))))
    });
    g.finish();
}

fn ws_message_parse(c: &mut Criterion) {
    let msg = r#"{"type":"subscribe","id":"sub_001","timestamp":"2025-08-12T10:30:00Z","data":{"channels":[1001,1002,1003,1004,1005,1006,1007,1008,1009,1010],"data_types":["T","S"],"interval":1000}}"#;
    let limits = voltage_gateway::ws::cmd::Limits {
        max_channels: 1000,
        max_depth: 32,
        messages_per_sec: 100,
        message_burst: 100,
        max_in_flight: 16,
    };
    let mut g = c.benchmark_group("ws");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function("parse_subscribe", |b| {
        b.iter(|| black_box(voltage_gateway::ws::cmd::parse(black_box(msg), &limits)))
    });
    g.finish();
}

fn frame_assembly(c: &mut Criterion) {
    // A 10-channel subscription, 20 changed points each: the ~2.6 KB frame of the targets.
    let fragments: Vec<Vec<u8>> = (0..10)
        .map(|ch| {
            let st = TypeState::new(1, points(20));
            let ids: Vec<PointId> = (1..=20).collect();
            voltage_gateway::site::tick::render_change(
                ChannelId(1001 + ch),
                DataType::Telemetry,
                Some(&st),
                &ids,
            )
            .0
            .expect("every point exists")
        })
        .collect();
    let refs: Vec<&[u8]> = fragments.iter().map(Vec::as_slice).collect();
    let size = voltage_gateway::wire::ws::build_frame(1, "2025-08-12T10:30:00.000Z", &refs).len();
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Bytes(size as u64));
    g.bench_function("build_frame_10_channels", |b| {
        b.iter(|| {
            black_box(voltage_gateway::wire::ws::build_frame(
                1,
                "2025-08-12T10:30:00.000Z",
                black_box(&refs),
            ))
        })
    });
    g.finish();
}

/// Counts offers; the fan-out's own cost is what is measured.
struct Count(usize);

impl voltage_gateway::fanout::Sink for Count {
    fn offer(&mut self, _conn: u64, _frame: &voltage_gateway::wire::Frame) -> bool {
        self.0 += 1;
        true
    }
    fn kick(&mut self, _conn: u64, _why: voltage_gateway::wire::close::Disconnect) {}
}

fn subscription_matching(c: &mut Criterion) {
    use voltage_gateway::fanout::{Fanout, Interval};
    use voltage_gateway::model::TypeMask;
    use voltage_gateway::site::tick::Tick;
    // 1000 channels; 10k clients each on a different pseudo-random 10 (the mixed target), and
    // the same 10k clients all on channels 1..=10 (the shared target).
    let snap_with = |round: u64| {
        let mut snap = Snapshot {
            seq: round,
            loaded: true,
            ..Snapshot::default()
        };
        for id in 1..=1000u32 {
            let pts: Vec<(PointId, Value)> = (1..=20)
                .map(|p| (p, Value::from_redis(&format!("{}.{p}", round))))
                .collect();
            let mut ch = ChannelState::default();
            ch.types[0] = Some(Arc::new(TypeState::new(1, pts)));
            snap.channels.insert(ChannelId(id), ch);
        }
        Arc::new(snap)
    };
    let changes = |snap: &Snapshot| -> Vec<voltage_gateway::site::change::Change> {
        snap.channels
            .iter()
            .map(|(id, ch)| voltage_gateway::site::change::Change {
                channel: *id,
                data_type: DataType::Telemetry,
                state: ch.types[0].clone(),
                points: (1..=20).collect(),
            })
            .collect()
    };
    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(10_000));
    for mixed in [false, true] {
        let s0 = snap_with(0);
        let mut fan = Fanout::new(Arc::new(Tick::new(s0.clone(), &[], 0)), 30_000, 1000);
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        for conn in 0..10_000u64 {
            fan.add_member(conn, true);
            let channels: Vec<ChannelId> = (0..10)
                .map(|i| {
                    if mixed {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        ChannelId(1 + (rng % 1000) as u32)
                    } else {
                        ChannelId(1 + i)
                    }
                })
                .collect();
            let interval = Interval::from_ms(100).unwrap();
            fan.subscribe(conn, &channels, TypeMask::ALL, interval, 0)
                .unwrap();
        }
        let mut time = 0i64;
        let mut round = 0u64;
        let name = if mixed {
            "tick_10k_clients_mixed"
        } else {
            "tick_10k_clients_same"
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    round += 1;
                    time += 100;
                    let s = snap_with(round);
                    Arc::new(Tick::new(s.clone(), &changes(&s), time))
                },
                |tick| {
                    let mut sink = Count(0);
                    fan.on_tick(tick, &mut sink);
                    black_box(sink.0)
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    http_parse,
    realtime_handler,
    fragment,
    ws_message_parse,
    frame_assembly,
    subscription_matching
);
criterion_main!(benches);
