//! One `Config` for the whole gateway: TOML file, then environment, then flags, merged and
//! validated here and nowhere else. Every field documents its default and its trade-off;
//! `voltage-gateway.example.toml` mirrors this file.

pub use crate::auth::config::{AnonymousRole, AuthConfig, UserConfig};
pub use crate::error::ConfigError;
pub use crate::history::config::HistoryConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Which monoio driver runs the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    /// io_uring; refusing to start when the kernel does not allow it.
    Uring,
    /// epoll (monoio's legacy driver), for kernels or containers without io_uring.
    Legacy,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/WebSocket listener binds. Default `0.0.0.0:6005`.
    pub listen: SocketAddr,
    /// Redis holding the site's data. Default `redis://127.0.0.1:6379`.
    pub redis_url: String,
    /// Shard threads (one monoio runtime and one SO_REUSEPORT listener each).
    /// Default 0 = the number of CPUs.
    pub shards: usize,
    /// io_uring or epoll. Default `auto`.
    pub driver: DriverKind,
    /// How often the feed thread asks Redis for changes, in ms. Default 10: a write is seen
    /// within one tick; an idle tick costs one small round trip. Lower = fresher, more Redis CPU.
    pub tick_ms: u64,
    /// Load (or upgrade) the `lua/` Function library into Redis at start-up and on every
    /// reconnect. Default true; turn off where Redis is managed by someone else.
    pub load_functions: bool,
    /// Subscribe to the library's `netsrv:wake` channel so a write is collected at once
    /// (about a millisecond) instead of at the next tick, which stays as the fallback.
    /// Default true; turn off for a Redis proxy without pub/sub.
    pub wake: bool,
    /// Most hashes one `netsrv_collect_data` call returns. Default 1000: bounds one round
    /// trip's size; a backlog is drained over several calls without waiting for the tick.
    pub collect_batch: usize,
    /// A channel with no write for this many seconds is reported `stale`. Default 60.
    pub stale_after_secs: u64,
    /// Connect/read/write timeout for Redis, in ms. Default 2000.
    pub redis_timeout_ms: u64,
    /// The data source counts as degraded (WebSocket `status`, `/health`) while the feed's
    /// last completed collect is older than this, in ms: live data that stopped moving is
    /// never presented as live. Default 3000.
    pub feed_max_lag_ms: u64,
    /// Longest wait between two reconnect attempts, in ms (backoff doubles from 100 ms).
    /// Default 5000.
    pub reconnect_max_ms: u64,
    /// `service` reported by `/health`. Default `voltage-gateway`.
    pub service_name: String,
    /// On SIGINT/SIGTERM, how long in-flight responses may take before the process exits,
    /// in ms. Default 3000.
    pub shutdown_grace_ms: u64,
    /// Open client connections (HTTP and WebSocket) across all shards; more are refused with
    /// 503 `TOO_MANY_CONNECTIONS`. Default 0 = derived at start-up from the process's file
    /// descriptor limit (raised from soft to hard first) minus a reserve for Redis, InfluxDB
    /// and the shards' own descriptors, so clients can never exhaust the descriptors the
    /// gateway needs to reconnect to its data. An explicit value above that is refused.
    pub max_connections: usize,
    /// Open connections from one source IP. Default 1024: one office or NAT gateway full of
    /// dashboards fits; one laptop cannot take the whole gateway. Raise it for a reverse
    /// proxy in front of the gateway, or for load tests from one address.
    pub max_connections_per_ip: usize,
    pub http: HttpConfig,
    pub ws: WsConfig,
    pub control: ControlConfig,
    pub auth: AuthConfig,
    pub history: HistoryConfig,
}

/// Control commands.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// This gateway's stable name among the instances sharing one Redis: its commands'
    /// results are routed to it (and only to it), and a restarted gateway with the same name
    /// resumes the routing and timeouts of its pending commands. 1–64 of `A-Za-z0-9_.:-`.
    /// Default "" = `{hostname}:{listen port}`.
    pub instance_id: String,
    /// A command whose result the device side has not reported within this many ms is
    /// answered `timeout` (exactly once). Default 10000.
    pub timeout_ms: u64,
    /// Control commands one WebSocket connection may have waiting for their `queued` ack;
    /// more are refused `RATE_LIMITED`. Default 16.
    pub max_in_flight: usize,
    /// Commands per second one user — and, separately, one client address — may send over
    /// the WebSocket and `POST /api/control` together (anonymous clients: per address only);
    /// more are refused `RATE_LIMITED` (HTTP 429), nothing queued. Default 10.
    pub max_per_sec: u32,
    /// Commands a user or address may send at once before `max_per_sec` applies. Default 20.
    pub burst: u32,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            instance_id: String::new(),
            timeout_ms: 10_000,
            max_in_flight: 16,
            max_per_sec: 10,
            burst: 20,
        }
    }
}

impl ControlConfig {
    /// The configured instance id, or `{hostname}:{port}`.
    pub fn instance(&self, listen: SocketAddr) -> String {
        if !self.instance_id.is_empty() {
            return self.instance_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| {
                h.trim()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                    .take(48)
                    .collect::<String>()
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "gateway".into());
        format!("{host}:{}", listen.port())
    }
}

/// WebSocket limits and liveness.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Largest inbound message (and frame), bytes; bigger closes with 1009. Default 65536.
    pub max_message_bytes: usize,
    /// Channels one connection may subscribe to (and list in one message). Default 1000.
    pub max_channels: usize,
    /// Deepest array/object nesting in a client message; deeper is `INVALID_JSON`. Default
    /// 32 (the protocol's messages nest 3 deep; the JSON parser recurses per level, so this
    /// bounds its stack use).
    pub max_json_depth: usize,
    /// Messages per second one connection may send; more are refused with `RATE_LIMITED`
    /// (the first of a streak is answered, the rest dropped; ten bursts' worth in a row close
    /// the connection with 1008). A subscribe costs one more per 10 channels. Default 100.
    pub max_messages_per_sec: u32,
    /// Messages a connection may send at once before the rate applies. Default 100: a
    /// dashboard opening dozens of panels never notices; a burst of thousands is refused.
    pub message_burst: u32,
    /// Outbound bytes queued per connection before it is conflated (skips to the latest values
    /// when it drains) instead of buffered. Default 1048576. Memory per slow client is bounded
    /// by this plus the kernel's socket buffer.
    pub outbound_budget_bytes: usize,
    /// A connection over its budget this long (s) is closed with 1008. Default 30.
    pub slow_close_secs: u64,
    /// Server ping frames every this many seconds. Default 30.
    pub ping_interval_secs: u64,
    /// Close a connection that sent nothing for this long (s). Default 90.
    pub idle_timeout_secs: u64,
    /// Serve an echo endpoint at `/autobahn` for the Autobahn conformance suite (CI only).
    /// Default false.
    pub conformance_echo: bool,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message_bytes: 64 * 1024,
            max_channels: 1000,
            max_json_depth: 32,
            max_messages_per_sec: 100,
            message_burst: 100,
            outbound_budget_bytes: 1024 * 1024,
            slow_close_secs: 30,
            ping_interval_secs: 30,
            idle_timeout_secs: 90,
            conformance_echo: false,
        }
    }
}

/// HTTP/1.1 limits. A request over a limit gets the JSON error body and the connection closes.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Request line plus headers, in bytes; over it → 431. Default 16384.
    pub max_head_bytes: usize,
    /// Number of request headers; over it → 431. Default 64.
    pub max_headers: usize,
    /// Request body, in bytes; over it → 413. Default 65536.
    pub max_body_bytes: usize,
    /// A keep-alive connection idle this long (s) is closed. Default 60.
    pub idle_timeout_secs: u64,
    /// A request's head and body must arrive within this many seconds of its first byte, or
    /// it is answered 408 `REQUEST_TIMEOUT` and the connection closed. Default 10 (nginx: 60
    /// for each): defends against slow-loris clients holding connections byte by byte.
    pub request_timeout_secs: u64,
    /// Writing a response may take at most this many seconds; a client that does not read
    /// its answers is closed. Default 10.
    pub send_timeout_secs: u64,
    /// Answers one connection may have waiting to be written before the gateway stops
    /// parsing its pipelined requests, in bytes. Default 65536: memory per connection stays
    /// bounded by this plus one response, however many requests it pipelines.
    pub max_pending_output_bytes: usize,
    /// Browser origins (`https://scada.example.com`, scheme and host[:port]) whose pages may
    /// use the gateway: CORS answers them, WebSocket upgrades from them are accepted, and
    /// state-changing requests from any other origin are refused with 403. The gateway's own
    /// origin (the `Origin` matches the `Host`) is always allowed; `"*"` allows every origin
    /// (the demo's setting). Requests without `Origin` (scripts, device tools) are not
    /// affected. Default: none besides the gateway's own.
    pub allowed_origins: Vec<String>,
    /// Host names (or addresses) the gateway answers to; a request whose `Host` is not on
    /// the list gets 400 (defends against DNS rebinding). Empty (default): any.
    pub allowed_hosts: Vec<String>,
    /// The role `GET /metrics` needs: `viewer` (default), `operator`, `admin`, or `none`
    /// (open to every client that reaches the listener, e.g. a Prometheus on a management
    /// network without tokens).
    pub metrics_role: AnonymousRole,
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed: behind them the
    /// client's address (failed-login limits, the audit's "from where") is the last address
    /// in that header that is not a trusted proxy. Empty (default): the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 6005)),
            redis_url: "redis://127.0.0.1:6379".into(),
            shards: 0,
            driver: DriverKind::Auto,
            tick_ms: 10,
            load_functions: true,
            wake: true,
            collect_batch: 1000,
            stale_after_secs: 60,
            redis_timeout_ms: 2000,
            feed_max_lag_ms: 3000,
            reconnect_max_ms: 5000,
            service_name: "voltage-gateway".into(),
            shutdown_grace_ms: 3000,
            max_connections: 0,
            max_connections_per_ip: 1024,
            http: HttpConfig::default(),
            ws: WsConfig::default(),
            control: ControlConfig::default(),
            auth: AuthConfig::default(),
            history: HistoryConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 64 * 1024,
            idle_timeout_secs: 60,
            request_timeout_secs: 10,
            send_timeout_secs: 10,
            max_pending_output_bytes: 64 * 1024,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            metrics_role: AnonymousRole::Viewer,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Values given on the command line or in the environment; `None` keeps the file's value.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub redis_url: Option<String>,
    pub shards: Option<usize>,
    pub driver: Option<DriverKind>,
    pub tick_ms: Option<u64>,
    pub max_connections_per_ip: Option<usize>,
    pub no_load_functions: bool,
}

/// The token signing key: `VOLTAGE_AUTH_SECRET`, then `secret_file`, then `secret`;
/// `None` when none is set. (Here, not in `auth`: reading it is loading.)
pub fn signing_secret(auth: &AuthConfig) -> Result<Option<Vec<u8>>, ConfigError> {
    let key = if let Ok(v) = std::env::var("VOLTAGE_AUTH_SECRET") {
        v
    } else if !auth.secret_file.is_empty() {
        std::fs::read_to_string(&auth.secret_file)
            .map_err(|e| ConfigError(format!("auth.secret_file {}: {e}", auth.secret_file)))?
            .trim()
            .to_string()
    } else {
        auth.secret.clone()
    };
    if key.is_empty() {
        return Ok(None);
    }
    if key.len() < 32 {
        return Err(ConfigError(
            "the token signing secret must be at least 32 bytes (generate one: head -c 32 /dev/urandom | base64)".into(),
        ));
    }
    Ok(Some(key.into_bytes()))
}

impl Config {
    /// File (if any) → overrides → validation: the one place configuration is assembled.
    pub fn load(file: Option<&Path>, over: &Overrides) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                Config::from_toml(&text)
                    .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))?
            }
            None => Config::default(),
        };
        cfg.apply(over);
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    pub fn apply(&mut self, over: &Overrides) {
        if let Some(v) = over.listen {
            self.listen = v;
        }
        if let Some(v) = &over.redis_url {
            self.redis_url = v.clone();
        }
        if let Some(v) = over.shards {
            self.shards = v;
        }
        if let Some(v) = over.driver {
            self.driver = v;
        }
        if let Some(v) = over.tick_ms {
            self.tick_ms = v;
        }
        if let Some(v) = over.max_connections_per_ip {
            self.max_connections_per_ip = v;
        }
        if over.no_load_functions {
            self.load_functions = false;
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError(m.into()));
        let id = &self.control.instance_id;
        if id.len() > 64
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        {
            return err("control.instance_id must be 1-64 of A-Za-z0-9_.:- (or empty)");
        }
        if self.control.max_per_sec == 0 || self.control.burst == 0 {
            return err("control.max_per_sec and control.burst must be positive");
        }
        if self.feed_max_lag_ms < 100 {
            return err("feed_max_lag_ms must be at least 100");
        }
        if !(1..=3_600_000).contains(&self.control.timeout_ms) || self.control.max_in_flight == 0 {
            return err("control.timeout_ms must be in 1..=3600000 and control.max_in_flight >= 1");
        }
        if !(1..=10_000).contains(&self.tick_ms) {
            return err("tick_ms must be in 1..=10000");
        }
        if self.shards > 1024 {
            return err("shards must be at most 1024 (0 = number of CPUs)");
        }
        if !(1..=100_000).contains(&self.collect_batch) {
            return err("collect_batch must be in 1..=100000");
        }
        // The URLs the feed will connect to must be ones the client library takes: checked
        // now, not at every connect (credentials with characters a URL cannot hold, say).
        let urls = match crate::redis_url::RedisTarget::parse(&self.redis_url)? {
            crate::redis_url::RedisTarget::Direct(url) => vec![url],
            crate::redis_url::RedisTarget::Sentinel(t) => (0..t.hosts.len())
                .map(|i| t.sentinel_url(i))
                .chain([t.master_url("127.0.0.1", 6379)])
                .collect(),
        };
        if urls
            .iter()
            .any(|u| redis::Client::open(u.as_str()).is_err())
        {
            return Err(ConfigError(format!(
                "redis_url '{}' is not a valid redis:// (or redis+sentinel://) URL",
                self.redis_url_redacted()
            )));
        }
        if self.redis_timeout_ms == 0 || self.reconnect_max_ms == 0 {
            return err("redis_timeout_ms and reconnect_max_ms must be positive");
        }
        if self.http.max_head_bytes < 256 || self.http.max_headers == 0 {
            return err("http.max_head_bytes must be >= 256 and http.max_headers >= 1");
        }
        if self.http.request_timeout_secs == 0 || self.http.send_timeout_secs == 0 {
            return err("http.request_timeout_secs and http.send_timeout_secs must be positive");
        }
        if self.http.max_pending_output_bytes < 4096 {
            return err("http.max_pending_output_bytes must be >= 4096");
        }
        if self.http.idle_timeout_secs == 0 {
            return err("http.idle_timeout_secs must be positive");
        }
        if self.max_connections_per_ip == 0 {
            return err("max_connections_per_ip must be positive");
        }
        let ws = &self.ws;
        if ws.max_message_bytes < 1024 || ws.max_message_bytes > 16 * 1024 * 1024 {
            return err("ws.max_message_bytes must be in 1024..=16777216");
        }
        if ws.max_messages_per_sec == 0 || ws.message_burst == 0 {
            return err("ws.max_messages_per_sec and ws.message_burst must be positive");
        }
        if !(4..=128).contains(&ws.max_json_depth) {
            return err("ws.max_json_depth must be in 4..=128");
        }
        if ws.max_channels == 0 || ws.outbound_budget_bytes < 4096 {
            return err("ws.max_channels must be positive and ws.outbound_budget_bytes >= 4096");
        }
        if ws.ping_interval_secs == 0 || ws.idle_timeout_secs == 0 || ws.slow_close_secs == 0 {
            return err("ws.ping_interval_secs, ws.idle_timeout_secs and ws.slow_close_secs must be positive");
        }
        for o in &self.http.allowed_origins {
            if o != "*" && crate::http::origin::normalize(o).is_none() {
                return Err(ConfigError(format!(
                    "http.allowed_origins: '{o}' is not an origin (scheme://host[:port], or \"*\")"
                )));
            }
        }
        self.history.validate()?;
        self.auth.validate()?;
        signing_secret(&self.auth).map(|_| ())
    }

    /// Shards to start: the configured number, or one per CPU.
    pub fn shard_count(&self) -> usize {
        match self.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// `redis_url` fit for logs: a password in it (or a `sentinel_password`) is replaced by `***`.
    pub fn redis_url_redacted(&self) -> String {
        let url = match self.redis_url.split_once("sentinel_password=") {
            Some((before, after)) => {
                let rest = after.find('&').map_or("", |i| &after[i..]);
                format!("{before}sentinel_password=***{rest}")
            }
            None => self.redis_url.clone(),
        };
        let url = &url;
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.clone();
        };
        // userinfo ends at the last '@' before the path (a password may contain '@').
        let host_start = rest.find('/').unwrap_or(rest.len());
        match rest[..host_start].rfind('@') {
            Some(at) => {
                let user = rest[..at].split(':').next().unwrap_or("");
                let user = if rest[..at].contains(':') {
                    format!("{user}:***")
                } else {
                    "***".to_string()
                };
                format!("{scheme}://{user}@{}", &rest[at + 1..])
            }
            None => url.clone(),
        }
    }

    /// Descriptors kept back from clients: Redis (data + wake-up), InfluxDB, logs, and per
    /// shard its listener, ring and wake-up descriptors.
    pub fn reserved_fds(&self) -> usize {
        64 + 4 * self.shard_count()
    }

    /// The connection limit for `fds` descriptors: `max_connections`, or derived from the
    /// descriptors when it is 0. An explicit limit the descriptors cannot serve is an error.
    pub fn connection_limit(&self, fds: u64) -> Result<usize, ConfigError> {
        let usable = usize::try_from(fds)
            .unwrap_or(usize::MAX)
            .saturating_sub(self.reserved_fds());
        match self.max_connections {
            0 if usable == 0 => Err(ConfigError(format!(
                "the file descriptor limit ({fds}) leaves no room for clients after the {} the gateway reserves; raise it (ulimit -n)",
                self.reserved_fds()
            ))),
            0 => Ok(usable),
            n if n <= usable => Ok(n),
            n => Err(ConfigError(format!(
                "max_connections = {n} exceeds what the file descriptor limit allows ({fds} descriptors - {} reserved for Redis, InfluxDB and the shards = {usable}); raise the limit (ulimit -n, LimitNOFILE=) or lower max_connections",
                self.reserved_fds()
            ))),
        }
    }

    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_stay_out_of_logs() {
        let with = |url: &str| Config {
            redis_url: url.into(),
            ..Config::default()
        };
        assert_eq!(
            with("redis://:s3cr@t@10.0.0.5:6379/0").redis_url_redacted(),
            "redis://:***@10.0.0.5:6379/0"
        );
        assert_eq!(
            with("redis://gw:pw@host").redis_url_redacted(),
            "redis://gw:***@host"
        );
        assert_eq!(
            with("redis://token@host").redis_url_redacted(),
            "redis://***@host"
        );
        assert_eq!(
            with("redis://127.0.0.1:6379").redis_url_redacted(),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            with("redis+sentinel://:pw@s1,s2:26380/site?sentinel_password=sp").redis_url_redacted(),
            "redis+sentinel://:***@s1,s2:26380/site?sentinel_password=***"
        );
    }

    #[test]
    fn connection_limit_follows_the_descriptors() {
        let cfg = Config {
            shards: 2,
            ..Config::default()
        };
        assert_eq!(cfg.reserved_fds(), 72);
        assert_eq!(cfg.connection_limit(20_000).unwrap(), 19_928);
        assert!(cfg.connection_limit(50).is_err());
        let explicit = Config {
            max_connections: 500,
            ..cfg.clone()
        };
        assert_eq!(explicit.connection_limit(20_000).unwrap(), 500);
        let e = explicit.connection_limit(400).unwrap_err();
        assert!(e.0.contains("max_connections = 500"), "{e}");
    }

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
        assert_eq!(Config::default().listen.port(), 6005);
    }

    #[test]
    fn file_then_overrides() {
        let mut cfg = Config::from_toml(
            "listen = \"127.0.0.1:7000\"\ntick_ms = 20\n[http]\nmax_body_bytes = 10\n",
        )
        .unwrap();
        assert_eq!(cfg.tick_ms, 20);
        assert_eq!(cfg.http.max_body_bytes, 10);
        assert_eq!(cfg.http.max_headers, 64);
        cfg.apply(&Overrides {
            tick_ms: Some(5),
            no_load_functions: true,
            ..Overrides::default()
        });
        assert_eq!(cfg.tick_ms, 5);
        assert_eq!(cfg.listen.port(), 7000);
        assert!(!cfg.load_functions);
        cfg.validate().unwrap();
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Config::from_toml("nope = 1").is_err());
        assert!(Config::from_toml("tick_ms = \"x\"").is_err());
        let cfg = Config {
            tick_ms: 0,
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
        let cfg = Config {
            redis_url: "http://x".into(),
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
        // A sentinel URL whose master URL the client library would refuse (found by the
        // redis_url fuzz target): refused here, not at every connect.
        let url = |u: &str| Config {
            redis_url: u.into(),
            ..Config::default()
        };
        assert!(url("redis+sentinel://gw:p#x@s1/site").validate().is_err());
        assert!(url("redis+sentinel://gw:pw@s1,s2:26380/site/2")
            .validate()
            .is_ok());
    }
}
