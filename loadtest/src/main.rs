//! voltage-loadtest: a load generator for voltage-gateway that is never the bottleneck.
//! Loopback targets only; every mode is bounded in time and count and stops by itself.
//! See loadtest/README.md.

mod ceiling;
mod client;
mod fanout;
mod net;
mod ops;
mod procfs;
mod report;
mod rest;
mod stats;
mod storm;
mod writer;
mod ws;

use clap::{Args, Parser, Subcommand};
use net::Driver;

const MAX_DURATION: f64 = 600.0;

#[derive(Parser)]
#[command(
    name = "voltage-loadtest",
    version,
    about = "Load generator for voltage-gateway (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// N WebSocket clients subscribed to C channels, fed by a Redis writer at --rate-hz.
    WsFanout(WsFanoutArgs),
    /// Keep-alive HTTP GET loops.
    Rest(RestArgs),
    /// R WebSocket sessions per second: connect, subscribe, snapshot, clean close.
    ConnectStorm(StormArgs),
    /// The physical ceiling: an in-process raw-TCP fan-out server and the same clients.
    Ceiling(CeilingArgs),
    /// N general clients with 10 Hz data; K alarm rules toggled at --events-per-sec:
    /// write-to-screen latency, lost and duplicated alarms.
    WsAlarms(WsAlarmsArgs),
    /// Control commands at --rate over many connections through a device side that reports
    /// at once: queued-ack and final-ack latency, exactly one final ack each.
    Control(ControlArgs),
}

#[derive(Args, Clone)]
struct WsAlarmsArgs {
    #[arg(long)]
    addr: String,
    #[arg(long)]
    redis: String,
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    rules: usize,
    #[arg(long, default_value_t = 20.0)]
    events_per_sec: f64,
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct ControlArgs {
    #[arg(long)]
    addr: String,
    #[arg(long)]
    redis: String,
    #[arg(long, default_value_t = 50)]
    connections: usize,
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct Common {
    /// Measurement length in seconds (max 600).
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Client threads (one monoio runtime each).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// io driver for the client runtimes: auto = io_uring, else epoll.
    #[arg(long, value_enum, default_value_t = Driver::Auto)]
    driver: Driver,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Flag the run CLIENT-BOUND when the load client uses more than this % of one core.
    #[arg(long, default_value_t = 85.0)]
    client_bound_pct: f64,
}

#[derive(Args, Clone)]
struct FanoutShape {
    /// WebSocket clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Channels per client.
    #[arg(long, default_value_t = 10)]
    channels: u32,
    /// First channel id.
    #[arg(long, default_value_t = 1)]
    channel_base: u32,
    /// Points per channel (>= 2: "1" = send time, "2" = round).
    #[arg(long, default_value_t = 20)]
    points: u32,
    /// Rounds per second (every channel written once per round).
    #[arg(long, default_value_t = 10.0)]
    rate_hz: f64,
    /// Source addresses 127.0.0.F … 127.0.0.(F+K-1) (default K = ceil(clients/20000)).
    #[arg(long)]
    sources: Option<usize>,
    /// F: last octet of the first source address (give each client process its own range).
    #[arg(long, default_value_t = 2)]
    source_first: u8,
    /// Sample latency from one data frame in this many (per client thread).
    #[arg(long, default_value_t = 50)]
    sample: u32,
    /// Clients in connect/upgrade/subscribe at once (all threads).
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds one client may take from connect to snapshot.
    #[arg(long, default_value_t = 15.0)]
    setup_timeout: f64,
    /// Seconds the whole ramp (all clients subscribed) may take before measuring anyway.
    #[arg(long, default_value_t = 120.0)]
    ramp_timeout: f64,
    /// Per-connection receive buffer, bytes.
    #[arg(long, default_value_t = 16384)]
    recv_buf: usize,
    /// Seconds of quiet after the last round before the tally.
    #[arg(long, default_value_t = 1.5)]
    quiet: f64,
}

#[derive(Args)]
struct WsFanoutArgs {
    /// Gateway address (loopback only); several, comma-separated, for the gateways of one
    /// site: clients are spread over them round-robin, figures reported per instance too.
    #[arg(long, default_value = "127.0.0.1:6005")]
    addr: String,
    /// The gateway's Redis (loopback only).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// WebSocket path.
    #[arg(long, default_value = "/ws")]
    path: String,
    /// Push interval requested in the subscribe (ms, 100..=60000).
    #[arg(long, default_value_t = 100)]
    interval: u32,
    /// Each client subscribes to a different pseudo-random --channels out of M channels.
    #[arg(long)]
    mixed: Option<u32>,
    /// The control for --mixed: the writer writes all M channels, and every client subscribes
    /// to the SAME pseudo-random --channels out of them (same write load, one subscription).
    #[arg(long, conflicts_with = "mixed")]
    same_of: Option<u32>,
    /// Gateway PID for RSS/CPU, one per --addr, comma-separated (default: the process named
    /// voltage-gateway listening on each address's port).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<i32>,
    /// The Redis server's PID: its CPU over the window is reported (each gateway collects).
    #[arg(long)]
    redis_pid: Option<i32>,
    #[command(flatten)]
    shape: FanoutShape,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct CeilingArgs {
    /// Port for the in-process ceiling server on 127.0.0.1 (0 = a free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Ceiling server threads.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    #[command(flatten)]
    shape: FanoutShape,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct RestArgs {
    #[arg(long, default_value = "127.0.0.1:6005")]
    addr: String,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Request path; repeat to mix (round-robin per connection).
    #[arg(long = "path", default_values_t = vec!["/api/channels/1001/realtime".to_string()])]
    paths: Vec<String>,
    /// Write one round to the channels named in the paths first (loopback Redis URL).
    #[arg(long)]
    redis: Option<String>,
    /// Points per seeded channel.
    #[arg(long, default_value_t = 20)]
    points: u32,
    /// Gateway PID for RSS/CPU (default: the process named voltage-gateway).
    #[arg(long)]
    server_pid: Option<i32>,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Requests written at once per connection (HTTP/1.1 pipelining; 1 = one in flight).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct StormArgs {
    #[arg(long, default_value = "127.0.0.1:6005")]
    addr: String,
    #[arg(long, default_value = "/ws")]
    path: String,
    /// New sessions per second (all threads).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Channels per session.
    #[arg(long, default_value_t = 10)]
    channels: u32,
    #[arg(long, default_value_t = 1)]
    channel_base: u32,
    #[arg(long, default_value_t = 100)]
    interval: u32,
    #[arg(long)]
    sources: Option<usize>,
    #[arg(long, default_value_t = 2)]
    source_first: u8,
    /// Write one round to the channels first (loopback Redis URL).
    #[arg(long)]
    redis: Option<String>,
    #[arg(long, default_value_t = 20)]
    points: u32,
    #[arg(long)]
    server_pid: Option<i32>,
    /// Seconds one session may take from connect to snapshot.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    #[command(flatten)]
    common: Common,
}

fn check_common(c: &Common) -> Result<(), String> {
    if !(c.duration > 0.0 && c.duration <= MAX_DURATION) {
        return Err(format!("--duration must be in (0, {MAX_DURATION}] seconds"));
    }
    if c.threads == 0 || c.threads > 64 {
        return Err("--threads must be in 1..=64".into());
    }
    Ok(())
}

fn check_shape(s: &FanoutShape) -> Result<(), String> {
    if !(s.rate_hz > 0.0 && s.rate_hz <= 1000.0) {
        return Err("--rate-hz must be in (0, 1000]".into());
    }
    if s.channels == 0 || s.channels > 1000 {
        return Err("--channels must be in 1..=1000".into());
    }
    if s.points < 2 || s.points > 10_000 {
        return Err("--points must be in 2..=10000".into());
    }
    if s.channel_base == 0 {
        return Err("--channel-base must be at least 1".into());
    }
    if s.source_first < 1 {
        return Err("--source-first must be at least 1".into());
    }
    if !((0.0..=30.0).contains(&s.quiet) && s.ramp_timeout > 0.0 && s.ramp_timeout <= 600.0) {
        return Err("--quiet must be in 0..=30 and --ramp-timeout in (0, 600]".into());
    }
    Ok(())
}

fn opts(
    s: &FanoutShape,
    c: &Common,
    interval: u32,
    mixed: Option<u32>,
    same_of: Option<u32>,
) -> fanout::FanoutOpts {
    fanout::FanoutOpts {
        clients: s.clients,
        channels: s.channels,
        channel_base: s.channel_base,
        points: s.points,
        interval,
        rate_hz: s.rate_hz,
        duration: c.duration,
        threads: c.threads,
        sources: s.sources,
        source_first: s.source_first,
        mixed,
        same_of,
        sample: s.sample,
        connect_concurrency: s.connect_concurrency,
        setup_timeout: s.setup_timeout,
        ramp_timeout: s.ramp_timeout,
        recv_buf: s.recv_buf,
        driver: c.driver,
        client_bound_pct: c.client_bound_pct,
        quiet: s.quiet,
    }
}

fn run(cli: Cli) -> Result<(serde_json::Value, String, bool), String> {
    match cli.mode {
        Mode::WsAlarms(a) => {
            if a.duration <= 0.0
                || a.duration > MAX_DURATION
                || a.clients == 0
                || a.clients > 19_000
                || a.rules == 0
                || a.rules > 1000
                || a.threads == 0
                || a.threads > 64
            {
                return Err("ws-alarms: duration 0..600 s, clients 1..=19000, rules 1..=1000, threads 1..=64".into());
            }
            net::check_fd_budget(a.clients, "ws-alarms clients")?;
            let o = ops::AlarmOpts {
                addr: a.addr,
                redis: a.redis,
                clients: a.clients,
                rules: a.rules,
                events_per_sec: a.events_per_sec,
                duration: a.duration,
                threads: a.threads,
            };
            let (j, t) = ops::alarms(&o)?;
            Ok((j, t, a.json))
        }
        Mode::Control(a) => {
            if a.duration <= 0.0
                || a.duration > MAX_DURATION
                || a.connections == 0
                || a.connections > 10_000
                || a.rate <= 0.0
                || a.rate > 100_000.0
                || a.threads == 0
                || a.threads > 64
            {
                return Err("control: duration 0..600 s, connections 1..=10000, rate 0..100000/s, threads 1..=64".into());
            }
            let o = ops::ControlOpts {
                addr: a.addr,
                redis: a.redis,
                connections: a.connections,
                rate: a.rate,
                duration: a.duration,
                threads: a.threads,
            };
            let (j, t) = ops::control(&o)?;
            Ok((j, t, a.json))
        }
        Mode::WsFanout(a) => {
            check_common(&a.common)?;
            check_shape(&a.shape)?;
            if !(100..=60_000).contains(&a.interval) {
                return Err("--interval must be in 100..=60000 ms (the gateway's range)".into());
            }
            let o = opts(&a.shape, &a.common, a.interval, a.mixed, a.same_of);
            let target = fanout::Target::Gateway {
                addrs: a.addr.split(',').map(str::to_string).collect(),
                redis: a.redis,
                path: a.path,
                server_pids: a.server_pid,
                redis_pid: a.redis_pid,
            };
            let (j, t) = fanout::run(&o, target)?;
            Ok((j, t, a.common.json))
        }
        Mode::Ceiling(a) => {
            check_common(&a.common)?;
            check_shape(&a.shape)?;
            if a.server_threads == 0 || a.server_threads > 16 {
                return Err("--server-threads must be in 1..=16".into());
            }
            let interval = (1000.0 / a.shape.rate_hz).round() as u32;
            let o = opts(&a.shape, &a.common, interval, None, None);
            let target = fanout::Target::Ceiling {
                port: a.port,
                server_threads: a.server_threads,
            };
            let (j, t) = fanout::run(&o, target)?;
            Ok((j, t, a.common.json))
        }
        Mode::Rest(a) => {
            check_common(&a.common)?;
            if a.connections > 20_000 {
                return Err("--connections must be at most 20000".into());
            }
            if a.pipeline == 0 || a.pipeline > 1024 {
                return Err("--pipeline must be in 1..=1024".into());
            }
            let o = rest::RestOpts {
                addr: a.addr,
                connections: a.connections,
                paths: a.paths,
                duration: a.common.duration,
                threads: a.common.threads,
                redis: a.redis,
                points: a.points.max(2),
                server_pid: a.server_pid,
                driver: a.common.driver,
                timeout: a.timeout,
                pipeline: a.pipeline,
                client_bound_pct: a.common.client_bound_pct,
            };
            let (j, t) = rest::run(&o)?;
            Ok((j, t, a.common.json))
        }
        Mode::ConnectStorm(a) => {
            check_common(&a.common)?;
            if a.channels == 0 || a.channels > 1000 {
                return Err("--channels must be in 1..=1000".into());
            }
            let o = storm::StormOpts {
                addr: a.addr,
                path: a.path,
                rate: a.rate,
                duration: a.common.duration,
                channels: a.channels,
                channel_base: a.channel_base,
                interval: a.interval,
                threads: a.common.threads,
                sources: a.sources,
                source_first: a.source_first,
                redis: a.redis,
                points: a.points.max(2),
                server_pid: a.server_pid,
                timeout: a.timeout,
                driver: a.common.driver,
                client_bound_pct: a.common.client_bound_pct,
            };
            let (j, t) = storm::run(&o)?;
            Ok((j, t, a.common.json))
        }
    }
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok((json, table, as_json)) => {
            if as_json {
                println!("{json}");
            } else {
                println!("{table}");
            }
            // Detached server/client threads (the ceiling server) end with the process.
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("voltage-loadtest: {e}");
            std::process::exit(2);
        }
    }
}
