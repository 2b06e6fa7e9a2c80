//! A private, throw-away `redis-server` on a free loopback port (no persistence). The demo
//! runs on it, and so do the integration tests.

use crate::error::Failed;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisProcess {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// Finds an executable on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A free port on 127.0.0.1 (it may be taken again before it is bound: callers retry).
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    // A server that wants a password answers NOAUTH: it is up all the same.
    s.write_all(b"PING\r\n").is_ok()
        && s.read(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

pub const INSTALL_HINT: &str =
    "redis-server was not found on PATH. Install it first, e.g. on Debian/Ubuntu: \
     sudo apt-get install -y redis-server (Redis 7 or newer is needed for Functions)";

impl RedisProcess {
    /// Starts `redis-server` on a free 127.0.0.1 port and waits until it answers PING.
    pub fn start() -> Result<RedisProcess, Failed> {
        Self::start_with(&[])
    }

    /// [`start`](Self::start) with more `redis-server` arguments (`--requirepass x`, say).
    pub fn start_with(extra: &[&str]) -> Result<RedisProcess, Failed> {
        let exe = find_on_path("redis-server").ok_or_else(|| Failed::new(INSTALL_HINT))?;
        let mut last_err = Failed::new("no attempt was made");
        // The free port may be taken between choosing and binding: retry a few times.
        for _ in 0..5 {
            let port = free_port().map_err(|e| Failed::because("cannot find a free port", e))?;
            match Self::spawn(&exe, port, extra) {
                Ok(p) => return Ok(p),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// Starts `redis-server` on the given port.
    pub fn start_on(exe: &Path, port: u16) -> Result<RedisProcess, Failed> {
        Self::spawn(exe, port, &[])
    }

    fn spawn(exe: &Path, port: u16, extra: &[&str]) -> Result<RedisProcess, Failed> {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("voltage-redis-{}-{port}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Failed::because(format!("cannot create {}", dir.display()), e))?;
        let mut cmd = Command::new(exe);
        // The private server must not outlive us, even if we are killed: ask the kernel to
        // SIGKILL it when the thread that started it dies.
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Failed::because(format!("cannot start {}", exe.display()), e))?;
        let mut p = RedisProcess { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(port) {
                return Ok(p);
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(Failed::new(format!(
                    "redis-server exited at start-up ({status}) on port {port}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Failed::new(format!(
            "redis-server did not answer on port {port} within 10 s"
        )))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: it holds nothing worth saving).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered. Fault tests.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let ok = unsafe { libc::kill(self.child.id() as i32, sig) } == 0;
        assert!(
            ok,
            "cannot signal redis-server: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Starts it again on the same port (tests of the Redis-down path).
    pub fn restart(&mut self) -> Result<(), Failed> {
        self.kill();
        let exe = find_on_path("redis-server").ok_or_else(|| Failed::new(INSTALL_HINT))?;
        let new = Self::start_on(&exe, self.port)?;
        let old = std::mem::replace(self, new);
        drop(old);
        Ok(())
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
