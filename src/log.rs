//! Timestamped lines on stderr. The gateway logs rarely (start, stop, dependency changes),
//! so a logging framework would add nothing but dependencies.

fn line(level: &str, msg: &str) {
    eprintln!("{} {level} {msg}", crate::time::iso_now());
}

pub fn info(msg: &str) {
    line("INFO", msg);
}

pub fn warn(msg: &str) {
    line("WARN", msg);
}

pub fn error(msg: &str) {
    line("ERROR", msg);
}
