//! `voltage-gateway watch`: a small WebSocket client for trying the gateway by hand — it
//! connects, sends the messages it was given, and prints every message it receives, one JSON
//! per line, until the time is up or the server closes.

use crate::error::Failed;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// Connects to `url` (`ws://host:port/ws?...`), sends `send` in order, prints what arrives
/// for `seconds` (0 = until closed). Errors are returned as text for the command line.
pub fn run(url: &str, send: &[String], seconds: u64) -> Result<(), Failed> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| Failed::new(format!("{url}: only ws:// URLs are supported")))?;
    let host = rest.split('/').next().unwrap_or(rest);
    let stream =
        TcpStream::connect(host).map_err(|e| Failed::because(format!("connect {host}"), e))?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| Failed::because("set the read timeout", e))?;
    let (mut ws, _) =
        tungstenite::client::client(url, stream).map_err(|e| Failed::because("upgrade", e))?;
    for m in send {
        ws.send(Message::text(m.clone()))
            .map_err(|e| Failed::because("send", e))?;
    }
    let end = (seconds > 0).then(|| Instant::now() + Duration::from_secs(seconds));
    let stdout = std::io::stdout();
    while end.is_none_or(|end| Instant::now() < end) {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let mut out = stdout.lock();
                let _ = writeln!(out, "{}", t.as_str());
                let _ = out.flush();
            }
            Ok(Message::Close(f)) => {
                if let Some(f) = f {
                    eprintln!("closed: {} {}", u16::from(f.code), f.reason);
                }
                return Ok(());
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(Failed::new(format!("read: {e}"))),
        }
    }
    let _ = ws.close(None);
    Ok(())
}
