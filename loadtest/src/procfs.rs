//! CPU time and RSS of processes and threads from /proc.

use std::time::Instant;

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// (comm, utime + stime in clock ticks) from a `stat` file.
fn parse_stat(s: &str) -> Option<(String, u64)> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let rest: Vec<&str> = s[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// utime + stime of a whole process, in clock ticks.
pub fn proc_ticks(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s).map(|(_, t)| t)
}

/// utime + stime of one thread of this process, in clock ticks.
pub fn self_task_ticks(tid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    parse_stat(&s).map(|(_, t)| t)
}

/// Every thread of `pid`: (tid, comm, ticks).
pub fn threads(pid: i32) -> Vec<(i32, String, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(s) = std::fs::read_to_string(e.path().join("stat")) {
            if let Some((comm, t)) = parse_stat(&s) {
                out.push((tid, comm, t));
            }
        }
    }
    out.sort_by_key(|t| t.0);
    out
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn comm_of(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// The gateway's PID: the single process whose comm is `voltage-gateway`; when there are
/// several, the one whose command line mentions `:port`.
pub fn find_gateway(port: u16) -> Result<i32, String> {
    let mut found = Vec::new();
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if comm_of(pid).as_deref() == Some("voltage-gateway") {
            found.push(pid);
        }
    }
    match found.len() {
        0 => Err("no process named voltage-gateway found; pass --server-pid".into()),
        1 => Ok(found[0]),
        _ => {
            let needle = format!(":{port}");
            let matching: Vec<i32> = found
                .iter()
                .copied()
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| {
                            String::from_utf8_lossy(&c)
                                .split('\0')
                                .any(|a| a.ends_with(&needle))
                        })
                        .unwrap_or(false)
                })
                .collect();
            if matching.len() == 1 {
                Ok(matching[0])
            } else {
                Err(format!(
                    "{} voltage-gateway processes ({found:?}); pass --server-pid",
                    found.len()
                ))
            }
        }
    }
}

/// CPU used by something between `start()` and `percent()`, as % of one core.
#[derive(Clone, Copy)]
pub struct CpuMark {
    ticks: u64,
    at: Instant,
}

impl CpuMark {
    pub fn new(ticks: u64) -> Self {
        CpuMark {
            ticks,
            at: Instant::now(),
        }
    }

    /// % of one core since this mark, given the ticks now.
    pub fn percent(&self, ticks_now: u64) -> f64 {
        let secs = self.at.elapsed().as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        ticks_now.saturating_sub(self.ticks) as f64 / clk_tck() / secs * 100.0
    }
}

/// Ticks of a set of this process's threads.
pub fn self_tasks_ticks(tids: &[i32]) -> u64 {
    tids.iter().filter_map(|t| self_task_ticks(*t)).sum()
}

/// Per-thread CPU of `pid` between two `threads()` readings, as (comm, % of one core),
/// busiest first; threads that used nothing are left out.
pub fn thread_breakdown(
    before: &[(i32, String, u64)],
    after: &[(i32, String, u64)],
    secs: f64,
) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = after
        .iter()
        .map(|(tid, comm, t)| {
            let b = before
                .iter()
                .find(|x| x.0 == *tid)
                .map(|x| x.2)
                .unwrap_or(0);
            (
                comm.clone(),
                t.saturating_sub(b) as f64 / clk_tck() / secs * 100.0,
            )
        })
        .filter(|x| x.1 > 0.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_comm() {
        let s = "123 (a b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16";
        // fields: 3=S ... 14=11, 15=12
        assert_eq!(parse_stat(s), Some(("a b".into(), 23)));
        assert!(proc_ticks(std::process::id() as i32).is_some());
        assert!(rss_kib(std::process::id() as i32).unwrap() > 0);
        assert!(self_task_ticks(gettid()).is_some());
    }
}
