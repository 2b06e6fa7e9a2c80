//! The architecture's two rules, checked on the source so they stay true as code is added:
//! the pure modules (`http`, `ws`, `api`, `fanout`, `site`, `wire` and the data types) import
//! nothing from the IO shell (`shard`, `feed`, `server`), and none of them reads the clock
//! (time comes in as `now`).

use std::path::{Path, PathBuf};

const PURE: &[&str] = &[
    "src/http",
    "src/ws",
    "src/api",
    "src/fanout",
    "src/site",
    "src/wire",
    "src/model.rs",
    "src/alarm.rs",
    "src/control",
    "src/auth",
    "src/catalog.rs",
    "src/metrics.rs",
    "src/error.rs",
    "src/json.rs",
    "src/history",
];

const SHELL: &[&str] = &["shard", "feed", "server", "recorder"];

const CLOCK: &[&str] = &[
    "now_millis(",
    "now_secs(",
    "iso_now(",
    "SystemTime::now",
    "Instant::now",
];

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            rust_files(&e.unwrap().path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

fn pure_files() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for p in PURE {
        rust_files(&root.join(p), &mut files);
    }
    assert!(files.len() > 20, "the pure modules were found");
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            (f, text)
        })
        .collect()
}

/// `crate::shard`, `crate::{.., shard, ..}` and the like.
fn imports_shell(text: &str) -> Option<&'static str> {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    SHELL.iter().copied().find(|m| {
        flat.contains(&format!("crate::{m}::"))
            || flat.contains(&format!("crate::{m};"))
            || flat.split("crate::{").skip(1).any(|group| {
                let group = group.split('}').next().unwrap_or("");
                group
                    .split(',')
                    .any(|item| item.trim() == *m || item.trim().starts_with(&format!("{m}::")))
            })
    })
}

#[test]
fn pure_modules_do_not_import_the_io_shell() {
    for (file, text) in pure_files() {
        assert_eq!(
            imports_shell(&text),
            None,
            "{} imports the IO shell",
            file.display()
        );
    }
}

#[test]
fn pure_modules_do_not_read_the_clock() {
    for (file, text) in pure_files() {
        for c in CLOCK {
            assert!(
                !text.contains(c),
                "{} reads the clock ({c}): take `now` as an argument",
                file.display()
            );
        }
    }
}

#[test]
fn the_checks_catch_what_they_look_for() {
    assert_eq!(imports_shell("use crate::shard::Shared;"), Some("shard"));
    assert_eq!(
        imports_shell("use crate::{\n  feed,\n  model };"),
        Some("feed")
    );
    assert_eq!(
        imports_shell("use crate::{model, server::Server};"),
        Some("server")
    );
    assert_eq!(imports_shell("use crate::fanout::Fanout; // shard"), None);
}
