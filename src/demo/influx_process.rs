//! A private, throw-away `influxd` (InfluxDB 1.x, Debian's `influxdb`) on free loopback ports,
//! with its own configuration file and directories. The demo records history into it, and so
//! do the integration tests. It can be stopped and started again on the same port with its
//! data kept (tests of the InfluxDB-down path).

use super::redis_process::{find_on_path, free_port};
use crate::error::Failed;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str = "influxd was not found on PATH. Install it first, e.g. on \
     Debian/Ubuntu: sudo apt-get install -y influxdb (InfluxDB 1.x)";

pub struct InfluxProcess {
    child: Option<Child>,
    http_port: u16,
    dir: PathBuf,
}

/// `/ping` answers 204.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"HTTP/1.1 204"))
}

impl InfluxProcess {
    /// Whether `influxd` is installed.
    pub fn available() -> bool {
        find_on_path("influxd").is_some()
    }

    /// Starts `influxd` on free 127.0.0.1 ports and waits until `/ping` answers.
    pub fn start() -> Result<InfluxProcess, Failed> {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("voltage-influx-{}-{n}", std::process::id()));
        let mut last_err = Failed::new("no attempt was made");
        // A free port may be taken between choosing and binding: retry a few times.
        for _ in 0..5 {
            let port = free_port().map_err(|e| Failed::because("cannot find a free port", e))?;
            let mut p = InfluxProcess {
                child: None,
                http_port: port,
                dir: dir.clone(),
            };
            match p.spawn() {
                Ok(()) => return Ok(p),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    fn spawn(&mut self) -> Result<(), Failed> {
        let exe = find_on_path("influxd").ok_or_else(|| Failed::new(INSTALL_HINT))?;
        let rpc = free_port().map_err(|e| Failed::because("cannot find a free port", e))?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Failed::because(format!("cannot create {}", self.dir.display()), e))?;
        let conf = self.dir.join("influxdb.conf");
        std::fs::write(&conf, config(&self.dir, self.http_port, rpc))
            .map_err(|e| Failed::because(format!("cannot write {}", conf.display()), e))?;
        let mut cmd = Command::new(&exe);
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let log = std::fs::File::create(self.dir.join("influxd.log"))
            .map_err(|e| Failed::because("cannot create influxd.log", e))?;
        let child = cmd
            .arg("-config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| Failed::because(format!("cannot start {}", exe.display()), e))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if ping(self.http_port) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(Failed::new(format!(
                    "influxd exited at start-up ({status}) on port {}; see {}",
                    self.http_port,
                    self.dir.join("influxd.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        Err(Failed::new(format!(
            "influxd did not answer on port {} within 20 s",
            self.http_port
        )))
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn port(&self) -> u16 {
        self.http_port
    }

    /// Stops it (SIGKILL; what it acknowledged is in its WAL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing is answered. Fault tests.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused influxd run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Starts it again on the same port, with its data.
    pub fn restart(&mut self) -> Result<(), Failed> {
        self.stop();
        self.spawn()
    }
}

impl Drop for InfluxProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A configuration with everything under `dir`, HTTP on `http`, the backup RPC on `rpc`,
/// no reporting, no self-monitoring, quiet logs.
fn config(dir: &Path, http: u16, rpc: u16) -> String {
    let d = dir.display();
    format!(
        "reporting-disabled = true\n\
         bind-address = \"127.0.0.1:{rpc}\"\n\
         [meta]\n  dir = \"{d}/meta\"\n  logging-enabled = false\n\
         [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
         [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n\
         [monitor]\n  store-enabled = false\n\
         [continuous_queries]\n  enabled = false\n\
         [logging]\n  level = \"warn\"\n"
    )
}
