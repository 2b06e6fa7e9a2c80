//! The human results table, progress lines, and shared measurement helpers.

use crate::procfs::{self, CpuMark};
use std::fmt::Display;
use std::io::Write as _;
use std::time::Instant;

/// A results table: sections of aligned `key  value` rows, then warnings.
#[derive(Default)]
pub struct Table {
    out: String,
    pub warnings: Vec<String>,
}

impl Table {
    pub fn section(&mut self, title: &str) {
        self.out.push_str(&format!("\n{title}\n"));
    }

    pub fn row(&mut self, k: &str, v: impl Display) {
        self.out.push_str(&format!("  {k:<30} {v}\n"));
    }

    pub fn warn(&mut self, w: impl Into<String>) {
        self.warnings.push(w.into());
    }

    pub fn render(&self, title: &str) -> String {
        let mut s = format!("==== {title} ====");
        s.push_str(&self.out);
        if !self.warnings.is_empty() {
            s.push('\n');
            for w in &self.warnings {
                s.push_str(&format!("  !! {w}\n"));
            }
        }
        s
    }
}

/// One progress line on stderr.
pub fn progress(line: impl Display) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
}

/// 12345678 → "12.3 M", for rates.
pub fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

pub fn mb(bytes_per_s: f64) -> String {
    format!("{:.2} MB/s", bytes_per_s / 1e6)
}

/// CPU of the measured server: a process (by PID) or a set of this process's threads.
#[derive(Clone, Debug)]
pub enum ServerCpu {
    Pid(i32),
    /// Several gateways on this box (one site's instances), counted together.
    Pids(Vec<i32>),
    Tids(Vec<i32>),
    None,
}

impl ServerCpu {
    /// The gateway given by `--server-pid`, else the one listening on `port`; without one the
    /// run goes on with a warning and no server CPU.
    pub fn find(pid: Option<i32>, port: u16) -> ServerCpu {
        match pid.map_or_else(|| procfs::find_gateway(port), Ok) {
            Ok(p) => ServerCpu::Pid(p),
            Err(e) => {
                progress(format!("[warn] {e}; server CPU not measured"));
                ServerCpu::None
            }
        }
    }

    pub fn ticks(&self) -> u64 {
        match self {
            ServerCpu::Pid(p) => procfs::proc_ticks(*p).unwrap_or(0),
            ServerCpu::Pids(ps) => ps.iter().filter_map(|p| procfs::proc_ticks(*p)).sum(),
            ServerCpu::Tids(t) => procfs::self_tasks_ticks(t),
            ServerCpu::None => 0,
        }
    }

    pub fn threads(&self) -> Vec<(i32, String, u64)> {
        match self {
            ServerCpu::Pid(p) => procfs::threads(*p),
            ServerCpu::Pids(ps) => ps.iter().flat_map(|p| procfs::threads(*p)).collect(),
            ServerCpu::Tids(t) => {
                let me = std::process::id() as i32;
                procfs::threads(me)
                    .into_iter()
                    .filter(|x| t.contains(&x.0))
                    .collect()
            }
            ServerCpu::None => Vec::new(),
        }
    }

    pub fn pid(&self) -> Option<i32> {
        match self {
            ServerCpu::Pid(p) => Some(*p),
            _ => None,
        }
    }

    /// The server processes (none for the in-process ceiling server).
    pub fn pids(&self) -> Vec<i32> {
        match self {
            ServerCpu::Pid(p) => vec![*p],
            ServerCpu::Pids(ps) => ps.clone(),
            _ => Vec::new(),
        }
    }

    /// Resident memory of the server processes together.
    pub fn rss_kib(&self) -> Option<u64> {
        let pids = self.pids();
        if pids.is_empty() {
            return None;
        }
        pids.iter().map(|p| procfs::rss_kib(*p)).sum()
    }
}

/// Ticks of this process minus the in-process server's threads (the ceiling server).
pub fn client_ticks(server: &ServerCpu) -> u64 {
    let me = procfs::proc_ticks(std::process::id() as i32).unwrap_or(0);
    match server {
        ServerCpu::Tids(_) => me.saturating_sub(server.ticks()),
        _ => me,
    }
}

/// CPU of the server and the client over a window.
pub struct CpuWindow {
    pub server: ServerCpu,
    server_mark: CpuMark,
    client_mark: CpuMark,
    server_threads: Vec<(i32, String, u64)>,
    client_threads: Vec<(i32, String, u64)>,
    start: Instant,
}

pub struct CpuResult {
    pub server_pct: f64,
    pub client_pct: f64,
    pub secs: f64,
    pub server_threads: Vec<(String, f64)>,
    pub client_threads: Vec<(String, f64)>,
}

impl CpuResult {
    /// CPU µs per unit of work, from a % of one core over the window (0 when nothing was done).
    pub fn us_per(&self, pct: f64, units: u64) -> f64 {
        if units == 0 {
            return 0.0;
        }
        pct / 100.0 * self.secs * 1e6 / units as f64
    }
}

impl CpuWindow {
    pub fn start(server: ServerCpu) -> Self {
        let me = std::process::id() as i32;
        CpuWindow {
            server_mark: CpuMark::new(server.ticks()),
            client_mark: CpuMark::new(client_ticks(&server)),
            server_threads: server.threads(),
            client_threads: procfs::threads(me),
            start: Instant::now(),
            server,
        }
    }

    pub fn finish(&self) -> CpuResult {
        let secs = self.start.elapsed().as_secs_f64();
        let me = std::process::id() as i32;
        let server_tids: Vec<i32> = match &self.server {
            ServerCpu::Tids(t) => t.clone(),
            _ => Vec::new(),
        };
        let client_after: Vec<_> = procfs::threads(me)
            .into_iter()
            .filter(|x| !server_tids.contains(&x.0))
            .collect();
        CpuResult {
            server_pct: self.server_mark.percent(self.server.ticks()),
            client_pct: self.client_mark.percent(client_ticks(&self.server)),
            server_threads: procfs::thread_breakdown(
                &self.server_threads,
                &self.server.threads(),
                secs,
            ),
            client_threads: procfs::thread_breakdown(&self.client_threads, &client_after, secs),
            secs,
        }
    }
}

/// The server section's first rows: its pid and RSS before and after the run.
pub fn server_rss_rows(t: &mut Table, pid: Option<i32>, before: Option<u64>, after: Option<u64>) {
    if let Some(pid) = pid {
        let kib = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
        t.row("pid", pid);
        t.row(
            "RSS before / after",
            format!("{} / {} KiB", kib(before), kib(after)),
        );
    }
}

/// Why setups failed (reason → count) and the first error message, when there are any.
pub fn failure_rows<K: Display, V: Display>(
    t: &mut Table,
    reasons: impl IntoIterator<Item = (K, V)>,
    first_error: Option<&String>,
) {
    let mut reasons = reasons.into_iter().peekable();
    if reasons.peek().is_some() {
        t.section("failure reasons");
        for (k, v) in reasons {
            t.row(&k.to_string(), v);
        }
    }
    if let Some(e) = first_error {
        t.row("first error message", e);
    }
}

/// The CPU rows every mode prints: the server's CPU, its cost per unit of work and busiest
/// threads, then the load client's (flagged and warned about when CLIENT-BOUND). `server_per`
/// and `client_per` are (label, value) rows of cost per unit of work; `client_threads` adds the
/// client's threads.
pub fn cpu_rows(
    t: &mut Table,
    cpu: &CpuResult,
    server_per: (&str, String),
    client_per: Option<(&str, String)>,
    client_threads: bool,
    client_bound: bool,
) {
    t.row("CPU", format!("{:.1}% of one core", cpu.server_pct));
    t.row(server_per.0, server_per.1);
    t.row("threads", threads_line(&cpu.server_threads, 6));
    t.section("load client");
    let flag = if client_bound { "  CLIENT-BOUND" } else { "" };
    t.row("CPU", format!("{:.1}% of one core{flag}", cpu.client_pct));
    if let Some((label, v)) = client_per {
        t.row(label, v);
    }
    if client_threads {
        t.row("threads", threads_line(&cpu.client_threads, 6));
    }
    if client_bound {
        t.warn(format!(
            "CLIENT-BOUND: the load client used {:.0}% of a core; the numbers measure the client too",
            cpu.client_pct
        ));
    }
}

/// "shard-0 45%, shard-1 44%, …" (top `n`).
pub fn threads_line(t: &[(String, f64)], n: usize) -> String {
    if t.is_empty() {
        return "-".into();
    }
    t.iter()
        .take(n)
        .map(|(c, p)| format!("{c} {p:.1}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn threads_json(t: &[(String, f64)]) -> serde_json::Value {
    serde_json::Value::Array(
        t.iter()
            .map(|(c, p)| serde_json::json!({"thread": c, "cpu_pct": crate::stats::round(*p, 1)}))
            .collect(),
    )
}

/// Per-second sampler of a ticking CPU counter.
pub struct Ticker {
    last: u64,
    at: Instant,
}

impl Ticker {
    pub fn new(ticks: u64) -> Self {
        Ticker {
            last: ticks,
            at: Instant::now(),
        }
    }

    /// % of one core since the previous call.
    pub fn pct(&mut self, ticks: u64) -> f64 {
        let secs = self.at.elapsed().as_secs_f64();
        let d = ticks.saturating_sub(self.last);
        self.last = ticks;
        self.at = Instant::now();
        if secs > 0.0 {
            d as f64 / procfs::clk_tck() / secs * 100.0
        } else {
            0.0
        }
    }
}
