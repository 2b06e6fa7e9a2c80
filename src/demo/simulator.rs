//! A simulated site: PCS units, PV inverters, battery racks and substation meters writing
//! realistic telemetry and signals through `comsrv_write_data`, each at its own 1–10 Hz.
//! Includes the seed document's example ids (1001/1002 with T and S, 2001 with set-point 20).
//!
//! It also plays the device side of control commands (takes them from the `TODO` lists,
//! applies them, reports through `control_report` — now and then a refusal with a reason) and
//! saves alarm rules that fire and recover as the values move (a rack's cell temperature
//! swings through its threshold every 30 s), so a newcomer sees both within a minute; plus a
//! model (channel 5000: the PV plant's total power), an automation rule (rack 1 hot → the
//! PCS set-point goes down) and a forwarding destination (`forward:cloud`).

use crate::error::Failed;
use crate::log;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, dependency-free, plenty for simulated noise.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An analog point that wanders inside its range (or follows a slow wave).
struct Analog {
    id: u32,
    value: f64,
    min: f64,
    max: f64,
    step: f64,
    decimals: usize,
    /// (amplitude, period): a sine around the range's centre instead of a random walk.
    wave: Option<(f64, Duration)>,
}

struct SimChannel {
    id: u32,
    period: Duration,
    next_due: Instant,
    telemetry: Vec<Analog>,
    /// Digital points (id, state) and the chance per write that one flips.
    signals: Vec<(u32, u8)>,
    flip_chance: f64,
    /// Set-points written once (the `A` hash): (id, value).
    setpoints: Vec<(u32, f64)>,
    /// Control states written once (the `C` hash): (id, state).
    controls: Vec<(u32, u8)>,
    /// Write every hash on the next turn (start-up, after a reconnect).
    needs_full: bool,
}

fn analog(id: u32, center: f64, spread: f64, decimals: usize) -> Analog {
    Analog {
        id,
        value: center,
        min: center - spread,
        max: center + spread,
        step: spread / 10.0,
        decimals,
        wave: None,
    }
}

/// What the demo saves in the library: (function, key, definition JSON) — alarm rules, a model,
/// an automation rule and a forwarding destination.
const DEMO_DEFINITIONS: &[(&str, &str, &str)] = &[
    (
        "alarmsrv_rule_save",
        "alarm:rule:rack1_cell_temp",
        r#"{"channel_id":3001,"data_type":"T","point_id":30,"operator":">","threshold":32,"level":2,"message":"Rack 1 cell temperature high","deadband":0.5}"#,
    ),
    (
        "alarmsrv_rule_save",
        "alarm:rule:temp_1001",
        r#"{"channel_id":1001,"data_type":"T","point_id":1,"operator":">","threshold":27.5,"level":2,"message":"Temperature exceeds threshold","deadband":0.3}"#,
    ),
    (
        "alarmsrv_rule_save",
        "alarm:rule:breaker_1002",
        r#"{"channel_id":1002,"data_type":"S","point_id":11,"operator":"==","threshold":1,"level":1,"message":"Breaker tripped"}"#,
    ),
    (
        "alarmsrv_rule_save",
        "alarm:rule:pcs_power_low",
        r#"{"channel_id":2001,"data_type":"T","point_id":1,"operator":"<","threshold":10,"level":3,"message":"PCS output power below 10 kW","deadband":1}"#,
    ),
    // Model channel 5000: the PV plant's total AC power (inverters 1003..1010).
    (
        "modsrv_model_save",
        "model:pv_total",
        r#"{"output":{"channel_id":5000,"data_type":"T","point_id":1},"op":"sum","inputs":[{"channel_id":1003,"point_id":1},{"channel_id":1004,"point_id":1},{"channel_id":1005,"point_id":1},{"channel_id":1006,"point_id":1},{"channel_id":1007,"point_id":1},{"channel_id":1008,"point_id":1},{"channel_id":1009,"point_id":1},{"channel_id":1010,"point_id":1}]}"#,
    ),
    // When rack 1 runs hot, the PCS's power set-point goes down to 20 kW (a control round
    // trip through the simulated device, every time the temperature rises past 33).
    (
        "rulesrv_rule_save",
        "rule:rack1_derate",
        r#"{"conditions":[{"channel_id":3001,"point_id":30,"operator":">","threshold":33}],"action":{"type":"control","channel_id":2001,"point_id":20,"command_type":"set_value","value":20},"cooldown_ms":10000}"#,
    ),
    // A northbound destination: 1001's and the model channel's telemetry.
    (
        "netsrv_forward_save",
        "forward:cloud",
        r#"{"channels":[1001,5000],"data_types":["T"],"maxlen":1000}"#,
    ),
];

/// The demo site's own channels (the seed's examples, PV, PCS, racks, meters).
pub const BASE_CHANNELS: usize = 37;
/// The largest site the demo simulates (`demo --channels`).
pub const MAX_CHANNELS: usize = 5000;

/// The demo site: 37 channels, then feeders 6001.. (1 Hz, four measurements and a breaker)
/// up to `total`.
fn site(now: Instant, total: usize) -> Vec<SimChannel> {
    let ch = |id: u32, hz: u64, telemetry: Vec<Analog>, signals: Vec<(u32, u8)>| SimChannel {
        id,
        period: Duration::from_millis(1000 / hz),
        next_due: now,
        telemetry,
        signals,
        flip_chance: 0.02,
        setpoints: Vec::new(),
        controls: Vec::new(),
        needs_full: true,
    };
    let mut out = vec![
        // The seed's examples: 1001 T 1=25.6 (temperature), 2=101.3 (pressure), 3=7.2.
        ch(
            1001,
            5,
            vec![
                analog(1, 25.6, 3.0, 1),
                analog(2, 101.3, 1.5, 1),
                analog(3, 7.2, 0.8, 1),
                analog(4, 400.0, 8.0, 1),
                analog(5, 52.0, 10.0, 2),
            ],
            vec![(10, 1), (11, 0), (12, 1)],
        ),
        ch(
            1002,
            2,
            vec![analog(1, 26.3, 3.0, 1), analog(2, 230.0, 5.0, 1)],
            vec![(10, 1), (11, 0)],
        ),
    ];
    // 2001: a PCS with a power set-point (A 20) and breaker controls (C 30, 31).
    let mut pcs = ch(
        2001,
        10,
        vec![
            analog(1, 50.0, 20.0, 2),
            analog(2, 690.0, 10.0, 1),
            analog(3, 49.98, 0.05, 3),
        ],
        vec![(10, 1), (11, 0)],
    );
    pcs.setpoints = vec![(20, 50.0), (21, 0.95)];
    pcs.controls = vec![(30, 1), (31, 0)];
    out.push(pcs);
    // PV inverters 1003..=1024: DC/AC power, voltages, temperature.
    for (i, id) in (1003..=1024).enumerate() {
        let hz = [1, 2, 5, 10][i % 4];
        let kw = 20.0 + (i as f64) * 1.5;
        out.push(ch(
            id,
            hz,
            vec![
                analog(1, kw, kw * 0.3, 2),
                analog(2, 620.0, 30.0, 1),
                analog(3, 400.0, 6.0, 1),
                analog(4, 41.0, 6.0, 1),
                analog(5, 0.98, 0.02, 3),
            ],
            vec![(10, 1), (11, 0), (12, 0)],
        ));
    }
    // Battery racks 3001..=3008: SOC, rack voltage, current, cell voltages and temperatures.
    for id in 3001..=3008 {
        let mut t = vec![
            analog(1, 65.0, 30.0, 1),
            analog(2, 768.0, 20.0, 1),
            analog(3, 0.0, 150.0, 1),
        ];
        t.extend((10..26).map(|p| analog(p, 3.3, 0.05, 3)));
        t.extend((30..34).map(|p| analog(p, 28.0, 4.0, 1)));
        if id == 3001 {
            // Cell temperature 30: through the demo rule's threshold (32) and back every 30 s.
            if let Some(a) = t.iter_mut().find(|a| a.id == 30) {
                a.min = 22.0;
                a.max = 36.0;
                a.wave = Some((6.0, Duration::from_secs(30)));
            }
        }
        out.push(ch(id, 2, t, vec![(10, 1), (11, 0), (12, 0), (13, 0)]));
    }
    // Substation meters 4001..=4004: three-phase voltages, currents, frequency, power.
    for id in 4001..=4004 {
        out.push(ch(
            id,
            10,
            vec![
                analog(1, 10.5, 0.2, 3),
                analog(2, 10.5, 0.2, 3),
                analog(3, 10.5, 0.2, 3),
                analog(4, 120.0, 40.0, 1),
                analog(5, 50.0, 0.05, 3),
                analog(6, 2.1, 0.8, 3),
            ],
            vec![(10, 1)],
        ));
    }
    let extra = total.clamp(BASE_CHANNELS, MAX_CHANNELS) - out.len();
    for (i, id) in (6001..).take(extra).enumerate() {
        let kw = 100.0 + (i % 50) as f64 * 4.0;
        out.push(ch(
            id,
            1,
            vec![
                analog(1, kw, kw * 0.2, 1),
                analog(2, 10.4, 0.2, 3),
                analog(3, 180.0, 60.0, 1),
                analog(4, 35.0, 5.0, 1),
            ],
            vec![(10, 1)],
        ));
    }
    out
}

/// The number of channels the demo site simulates for `--channels total`.
pub fn channel_count(total: usize) -> usize {
    total.clamp(BASE_CHANNELS, MAX_CHANNELS)
}

fn values_json(out: &mut String, pairs: impl Iterator<Item = (u32, String)>) {
    out.clear();
    out.push('{');
    for (i, (id, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{id}\":{v}");
    }
    out.push('}');
}

pub struct Simulator {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts writing the 37-channel site to the Redis at `url` (which must hold the
    /// Function library).
    pub fn start(url: &str) -> Result<Simulator, Failed> {
        Self::start_sized(url, BASE_CHANNELS)
    }

    /// The same with `total` channels (feeders added beyond the 37; at most 5,000).
    pub fn start_sized(url: &str, total: usize) -> Result<Simulator, Failed> {
        let client =
            redis::Client::open(url).map_err(|e| Failed::because(format!("redis URL {url}"), e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("simulator".into())
            .spawn(move || run(client, flag, total))
            .map_err(|e| Failed::because("cannot start the simulator thread", e))?;
        Ok(Simulator {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_cmd(pipe: &mut redis::Pipeline, ch: u32, t: &str, json: &str) {
    pipe.cmd("FCALL")
        .arg("comsrv_write_data")
        .arg(1)
        .arg(format!("comsrv:{ch}:{t}"))
        .arg(json)
        .ignore();
}

/// One command taken from a `TODO` list, as the library queued it.
struct Todo {
    command_id: String,
    point: u32,
    value: f64,
    deadline_ms: i64,
}

fn parse_todo(raw: &str) -> Option<Todo> {
    use simd_json::prelude::*;
    let mut buf = raw.as_bytes().to_vec();
    let v = simd_json::to_borrowed_value(&mut buf).ok()?;
    Some(Todo {
        command_id: v.get_str("command_id")?.to_string(),
        point: u32::try_from(v.get_u64("point_id")?).ok()?,
        value: v.get("value")?.cast_f64()?,
        deadline_ms: v.get("deadline_ms")?.cast_f64()? as i64,
    })
}

/// The device side: takes every queued command of the channels with set-points or controls,
/// applies it (one in eight is refused, as an interlock would) and reports the result.
/// An expired command is dropped unexecuted: its sender was told `timeout`.
fn serve_commands(
    c: &mut redis::Connection,
    channels: &mut [SimChannel],
    rng: &mut Rng,
) -> redis::RedisResult<()> {
    for ch in channels
        .iter_mut()
        .filter(|c| !c.setpoints.is_empty() || !c.controls.is_empty())
    {
        for t in ["A", "C"] {
            let raw: Vec<String> = redis::cmd("LPOP")
                .arg(format!("comsrv:{}:{t}:TODO", ch.id))
                .arg(16)
                .query::<Option<Vec<String>>>(c)?
                .unwrap_or_default();
            for todo in raw.iter().filter_map(|r| parse_todo(r)) {
                if todo.deadline_ms < crate::time::now_millis() {
                    continue;
                }
                let result = if rng.next_f64() < 0.125 {
                    r#"{"success":false,"message":"interlock active: command refused by the device"}"#
                        .to_string()
                } else {
                    if t == "A" {
                        if let Some(sp) = ch.setpoints.iter_mut().find(|s| s.0 == todo.point) {
                            sp.1 = todo.value;
                        }
                        // The PCS follows its power set-point.
                        if ch.id == 2001 && todo.point == 20 {
                            if let Some(p) = ch.telemetry.iter_mut().find(|a| a.id == 1) {
                                p.min = todo.value - 2.0;
                                p.max = todo.value + 2.0;
                                p.value = todo.value;
                            }
                        }
                    } else if let Some(ct) = ch.controls.iter_mut().find(|s| s.0 == todo.point) {
                        ct.1 = todo.value as u8;
                    }
                    let mut b = ryu::Buffer::new();
                    format!(
                        r#"{{"success":true,"actual_value":{}}}"#,
                        b.format_finite(todo.value)
                    )
                };
                redis::cmd("FCALL")
                    .arg("control_report")
                    .arg(1)
                    .arg(format!("cmd:{}", todo.command_id))
                    .arg(result)
                    .query::<redis::Value>(c)?;
            }
        }
    }
    Ok(())
}

/// Saves the demo's definitions; true when all were saved.
fn save_definitions(c: &mut redis::Connection) -> bool {
    DEMO_DEFINITIONS.iter().all(|(function, key, json)| {
        redis::cmd("FCALL")
            .arg(*function)
            .arg(1)
            .arg(*key)
            .arg(*json)
            .query::<redis::Value>(c)
            .is_ok()
    })
}

fn run(client: redis::Client, stop: Arc<AtomicBool>, total: usize) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut channels = site(Instant::now(), total);
    let mut rules_saved = false;
    let mut con: Option<redis::Connection> = None;
    let mut json = String::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        let Some(c) = con.as_mut() else {
            con = client
                .get_connection_with_timeout(Duration::from_secs(1))
                .ok();
            if con.is_none() {
                std::thread::sleep(Duration::from_millis(500));
            }
            continue;
        };
        if !rules_saved {
            // Until the gateway has loaded the library this fails; retried every turn.
            rules_saved = save_definitions(c);
        }
        if let Err(e) = serve_commands(c, &mut channels, &mut rng) {
            log::warn(&format!("simulator: serving commands failed: {e}"));
        }
        let now = Instant::now();
        let mut pipe = redis::pipe();
        for ch in channels.iter_mut().filter(|c| c.next_due <= now) {
            ch.next_due = now + ch.period;
            for a in &mut ch.telemetry {
                a.value = match a.wave {
                    Some((amp, period)) => {
                        let phase = now.duration_since(started).as_secs_f64()
                            / period.as_secs_f64()
                            * std::f64::consts::TAU;
                        let centre = (a.min + a.max) / 2.0;
                        centre + amp * phase.sin() + (rng.next_f64() - 0.5) * 0.2
                    }
                    None => a.value + (rng.next_f64() - 0.5) * 2.0 * a.step,
                }
                .clamp(a.min, a.max);
            }
            values_json(
                &mut json,
                ch.telemetry
                    .iter()
                    .map(|a| (a.id, format!("{:.*}", a.decimals, a.value))),
            );
            write_cmd(&mut pipe, ch.id, "T", &json);
            let mut flipped = false;
            for s in &mut ch.signals {
                if rng.next_f64() < ch.flip_chance {
                    s.1 ^= 1;
                    flipped = true;
                }
            }
            if flipped || ch.needs_full {
                values_json(
                    &mut json,
                    ch.signals.iter().map(|&(id, v)| (id, v.to_string())),
                );
                write_cmd(&mut pipe, ch.id, "S", &json);
            }
            if ch.needs_full && !ch.setpoints.is_empty() {
                values_json(
                    &mut json,
                    ch.setpoints.iter().map(|&(id, v)| (id, v.to_string())),
                );
                write_cmd(&mut pipe, ch.id, "A", &json);
            }
            if ch.needs_full && !ch.controls.is_empty() {
                values_json(
                    &mut json,
                    ch.controls.iter().map(|&(id, v)| (id, v.to_string())),
                );
                write_cmd(&mut pipe, ch.id, "C", &json);
            }
            ch.needs_full = false;
        }
        if pipe.is_empty() {
            continue;
        }
        if let Err(e) = pipe.query::<()>(c) {
            log::warn(&format!("simulator: write failed: {e}"));
            con = None;
            channels.iter_mut().for_each(|c| c.needs_full = true);
        }
    }
}
