//! Hot primitives, each with its throughput: HTTP request parsing, the realtime REST handler
//! over a snapshot, and value-fragment rendering for a 50-point channel.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use voltage_gateway::config::Config;
use voltage_gateway::http::{parse_request, Limits, Parsed};
use voltage_gateway::model::{ChannelId, PointId, Value};
use voltage_gateway::state::{render_values, ChannelState, Shared, Snapshot, TypeState};

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
    let shared = Shared::new(Arc::new(Config::default()));
    let mut snap = Snapshot::default();
    for id in 1..=1000 {
        let mut ch = ChannelState::default();
        ch.types[0] = Some(Arc::new(TypeState::new(1_736_755_800, points(20))));
        snap.channels.insert(ChannelId(id), ch);
    }
    shared.snapshot.store(Arc::new(snap));
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
    g.bench_function("realtime_20_points", |b| {
        b.iter(|| black_box(voltage_gateway::api::handle(&req, &shared)))
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

criterion_group!(benches, http_parse, realtime_handler, fragment);
criterion_main!(benches);
