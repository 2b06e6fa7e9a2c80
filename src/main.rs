//! The `voltage-gateway` binary: `serve` (default), `demo` and `watch`.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use voltage_gateway::config::{Config, DriverKind, Overrides};
use voltage_gateway::demo::{simulator, InfluxProcess, RedisProcess, Simulator};
use voltage_gateway::{log, Server};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// VoltageEMS real-time data gateway: REST and WebSocket over the site's Redis.
#[derive(Parser)]
#[command(
    name = "voltage-gateway",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway against a Redis (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Run a live demo: a private redis-server, a simulated site and the gateway on
    /// 127.0.0.1:6005. Ctrl-C stops everything it started.
    Demo(DemoArgs),
    /// Connect to a gateway's WebSocket, send the given messages and print every message
    /// received, one JSON per line (try alarms and control commands by hand).
    Watch(WatchArgs),
    /// Read a password from standard input (one line) and print its argon2id hash for the
    /// configuration's [[auth.users]] password_hash.
    HashPassword,
}

#[derive(Args, Clone)]
struct WatchArgs {
    /// WebSocket URL, query parameters included
    #[arg(default_value = "ws://127.0.0.1:6005/ws")]
    url: String,
    /// A message to send after connecting (repeat for several, sent in order)
    #[arg(long)]
    send: Vec<String>,
    /// Stop after this many seconds (0: when the server closes or Ctrl-C)
    #[arg(long, default_value_t = 0)]
    seconds: u64,
}

#[derive(Args, Clone, Default)]
struct RuntimeArgs {
    /// Shard threads, each a monoio runtime with its own SO_REUSEPORT listener
    /// [default: number of CPUs]
    #[arg(long, env = "VOLTAGE_SHARDS")]
    shards: Option<usize>,
    /// io driver: auto = io_uring when the kernel allows it, else epoll; uring = io_uring or
    /// refuse to start; legacy = epoll [default: auto]
    #[arg(long, env = "VOLTAGE_DRIVER", value_enum)]
    driver: Option<DriverKind>,
    /// How often the feed pulls changes from Redis, in ms (a write is visible within one
    /// tick) [default: 10]
    #[arg(long, env = "VOLTAGE_TICK_MS")]
    tick_ms: Option<u64>,
    /// TOML configuration file (see voltage-gateway.example.toml); flags and environment
    /// variables override it
    #[arg(long, env = "VOLTAGE_CONFIG")]
    config: Option<PathBuf>,
    /// Least severe log level written to stderr [default: info]
    #[arg(long, env = "VOLTAGE_LOG_LEVEL", value_enum, default_value = "info")]
    log_level: log::Level,
    /// Log lines as text or as JSON objects (one per line, for log shippers)
    #[arg(long, env = "VOLTAGE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: log::Format,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Address to listen on for HTTP and WebSocket [default: 0.0.0.0:6005]
    #[arg(long, env = "VOLTAGE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Redis URL: redis://…, or redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER_NAME [default: redis://127.0.0.1:6379]
    #[arg(long, env = "VOLTAGE_REDIS_URL")]
    redis: Option<String>,
    /// Do not load the lua/ Function library into Redis (for Redis managed elsewhere)
    #[arg(long, env = "VOLTAGE_NO_LOAD_FUNCTIONS")]
    no_load_functions: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Limits an operator sets at the command line (the rest are in the config file).
#[derive(Args, Clone, Default)]
struct LimitArgs {
    /// Open connections allowed from one source address (raise it behind a reverse proxy
    /// or for load tests) [default: 1024]
    #[arg(long, env = "VOLTAGE_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
}

#[derive(Args, Clone)]
struct DemoArgs {
    /// Address the demo gateway listens on
    #[arg(long, default_value = "127.0.0.1:6005")]
    listen: SocketAddr,
    /// Channels the simulated site has: its 37, then 1 Hz feeders (6001…) up to this many
    #[arg(long, default_value_t = 37, value_parser = clap::value_parser!(u32).range(37..=5000))]
    channels: u32,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn load_config(
    listen: Option<SocketAddr>,
    redis: Option<String>,
    no_load: bool,
    rt: &RuntimeArgs,
) -> Config {
    log::configure(rt.log_level, rt.log_format);
    let over = Overrides {
        listen,
        redis_url: redis,
        shards: rt.shards,
        driver: rt.driver,
        tick_ms: rt.tick_ms,
        max_connections_per_ip: rt.limits.max_connections_per_ip,
        no_load_functions: no_load,
    };
    Config::load(rt.config.as_deref(), &over).unwrap_or_else(|e| fail(&e.to_string()))
}

fn fail(msg: &str) -> ! {
    log::error(msg);
    std::process::exit(1);
}

/// Installs the SIGINT/SIGTERM handlers. Done before anything starts, so a signal that
/// arrives while the gateway is starting still means "shut down cleanly", not "die".
fn signals() -> signal_hook::iterator::Signals {
    use signal_hook::consts::{SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .unwrap_or_else(|e| fail(&format!("cannot install signal handlers: {e}")))
}

/// Blocks until SIGINT or SIGTERM; a second signal exits at once.
fn wait_for_signal(mut signals: signal_hook::iterator::Signals) {
    signals.forever().next();
    log::info("shutting down (press Ctrl-C again to exit at once)");
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            std::process::exit(130);
        }
    });
}

fn serve(args: ServeArgs) {
    let signals = signals();
    let cfg = load_config(
        args.listen,
        args.redis,
        args.no_load_functions,
        &args.runtime,
    );
    let server = Server::start(cfg).unwrap_or_else(|e| fail(&e.to_string()));
    wait_for_signal(signals);
    server.shutdown();
    log::info("stopped");
}

fn demo(args: DemoArgs) {
    let signals = signals();
    let mut redis = RedisProcess::start().unwrap_or_else(|e| fail(&e.to_string()));
    let mut cfg = load_config(Some(args.listen), Some(redis.url()), false, &args.runtime);
    // The demo is for trying things by hand from anywhere on this machine: anonymous clients
    // may send control commands, and any page may use it. Never the defaults of `serve`.
    cfg.auth.anonymous_role = voltage_gateway::config::AnonymousRole::Operator;
    cfg.http.allowed_origins = vec!["*".into()];
    if cfg.auth.users.is_empty() {
        // Users to try login with; known passwords, so only in the demo (on loopback).
        for (name, role) in [
            ("viewer", voltage_gateway::auth::Role::Viewer),
            ("operator", voltage_gateway::auth::Role::Operator),
            ("admin", voltage_gateway::auth::Role::Admin),
        ] {
            let hash = voltage_gateway::auth::password::hash(name, &salt())
                .unwrap_or_else(|e| fail(&format!("cannot hash a demo password: {e}")));
            cfg.auth.users.push(voltage_gateway::config::UserConfig {
                username: name.into(),
                password_hash: hash,
                role,
            });
        }
    }
    // History: a private influxd when InfluxDB is installed (and none is configured).
    let mut influx = None;
    let history_line = if !cfg.history.url.is_empty() {
        format!("InfluxDB {} (from the configuration)", cfg.history.url)
    } else if InfluxProcess::available() {
        let p = InfluxProcess::start().unwrap_or_else(|e| {
            redis.kill();
            fail(&e.to_string())
        });
        cfg.history.url = p.url();
        let line = format!("private InfluxDB {} (stopped on exit)", p.url());
        influx = Some(p);
        line
    } else {
        log::warn("demo: influxd is not installed, so history is off (/history answers 503 HISTORY_UNAVAILABLE); install it with: sudo apt-get install -y influxdb");
        "off: influxd not installed (sudo apt-get install -y influxdb)".to_string()
    };
    log::warn("demo: anonymous clients have the operator role, every origin is allowed, and users viewer/operator/admin have their names as passwords (demo only; `serve` defaults to anonymous viewers, same-origin, no users)");
    let server = Server::start(cfg).unwrap_or_else(|e| {
        redis.kill();
        fail(&e.to_string())
    });
    // The gateway loads the Function library on connect; the simulator needs it first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.published().redis.load().healthy && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sim = Simulator::start_sized(&redis.url(), args.channels as usize)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let base = format!("http://{}", server.local_addr());
    println!(
        "\nVoltageEMS gateway demo\n\
         \x20 private Redis:   {redis_url} (no persistence; stopped on exit)\n\
         \x20 simulated site:  {n} channels writing 1-10 Hz through comsrv_write_data\n\
         \x20 history:         {history_line}\n\
         \x20 try:\n\
         \x20   curl {base}/api/channels\n\
         \x20   curl '{base}/api/channels/1001/realtime?data_type=T'\n\
         \x20   curl {base}/api/channels/1001/status\n\
         \x20   curl '{base}/api/channels/2001/realtime?data_type=A&point_id=20'\n\
         \x20   curl {base}/health/detailed\n\
         \x20   redis-cli -p {port} FCALL comsrv_write_data 1 comsrv:1001:T '{{\"1\":25.6,\"2\":101.3}}'\n\
         \x20   curl {base}/api/alarms/active\n\
         \x20   curl '{base}/api/channels/1001/history?data_type=T&point_id=1&interval=10&agg=mean'\n\
         \x20   curl '{base}/api/channels/1001/history?format=csv' -o 1001.csv\n\
         \x20 WebSocket: ws://{addr}/ws\n\
         \x20   watch alarms:     {exe} watch 'ws://{addr}/ws?data_type=alarm'\n\
         \x20   send a set-point: {exe} watch ws://{addr}/ws --seconds 5 --send '{{\"type\":\"control\",\"id\":\"ctrl_001\",\"data\":{{\"channel_id\":2001,\"point_id\":20,\"command_type\":\"set_value\",\"value\":50.0}}}}'\n\
         \x20 login (demo users viewer, operator, admin; password = the name):\n\
         \x20   curl {base}/api/auth/login -H 'Content-Type: application/json' -d '{{\"username\":\"operator\",\"password\":\"operator\"}}'\n\
         \x20 anonymous clients are operators here and any origin may connect: demo only.\n\
         \x20 Ctrl-C stops everything.\n",
        redis_url = redis.url(),
        n = simulator::channel_count(args.channels as usize),
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "voltage-gateway".into()),
        port = redis.port(),
        addr = server.local_addr(),
    );
    wait_for_signal(signals);
    drop(sim);
    server.shutdown();
    drop(redis);
    drop(influx);
    log::info("demo stopped");
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Demo(args)) => demo(args),
        Some(Command::Watch(args)) => {
            if let Err(e) = voltage_gateway::watch::run(&args.url, &args.send, args.seconds) {
                fail(&e.to_string());
            }
        }
        Some(Command::HashPassword) => hash_password(),
        None => serve(cli.serve),
    }
}

fn hash_password() {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        fail("cannot read the password from standard input");
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        fail("empty password (give it on standard input: echo -n 'secret' | voltage-gateway hash-password)");
    }
    match voltage_gateway::auth::password::hash(password, &salt()) {
        Ok(h) => println!("{h}"),
        Err(e) => fail(&format!("cannot hash: {e}")),
    }
}

/// 16 fresh random bytes for a password hash's salt.
fn salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).unwrap_or_else(|e| fail(&format!("no randomness for a salt: {e}")));
    salt
}
