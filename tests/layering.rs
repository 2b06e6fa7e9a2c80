//! The architecture's rules, checked on the source so they stay true as code is added: the
//! pure modules import nothing from the IO shell (`shard`, `feed`, `server`, `recorder`), do
//! no IO (no Redis, runtime, file, socket or thread, no OS randomness) and never read the
//! clock (time comes in as `now`). A feature's `jobs.rs` is its Redis work — run by the feed,
//! named (never run) by the pure code — and is the one exception. `lib.rs`'s Layout and
//! README's Architecture name every module.

use std::path::{Path, PathBuf};

const PURE: &[&str] = &[
    "src/http",
    "src/ws",
    "src/api",
    "src/fanout",
    "src/site",
    "src/wire",
    "src/model.rs",
    "src/alarm",
    "src/control",
    "src/auth",
    "src/catalog",
    "src/definitions",
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

/// Paths that do IO. `std::net` is there for its sockets; its address types are values.
const IO: &[&str] = &[
    "redis::",
    "monoio::",
    "std::fs",
    "std::thread",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "std::net::ToSocketAddrs",
    "std::process",
    "OsRng",
    "getrandom::",
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

/// Each pure file's text without its comments (a comment may name what the code must not do).
fn pure_files() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for p in PURE {
        let p = root.join(p);
        assert!(
            p.exists(),
            "{} is listed as pure but does not exist",
            p.display()
        );
        rust_files(&p, &mut files);
    }
    assert!(files.len() > 20, "the pure modules were found");
    files
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "jobs.rs"))
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            (f, code(&text))
        })
        .collect()
}

/// `text` without `//` comments.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal (a URL) is kept: count the quotes before it.
            Some(i) if l[..i].matches('"').count() % 2 == 0 => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a file's `use` declarations name, nested groups expanded:
/// `use crate::{a, b::{c, d}};` → `crate::a`, `crate::b::c`, `crate::b::d`.
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for part in flat.split("use ").skip(1) {
        let Some(end) = part.find(';') else { continue };
        expand(
            "",
            &part[..end].replace(" as ", "@").replace(' ', ""),
            &mut out,
        );
    }
    out
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    match tree.find('{') {
        None => {
            for item in split_top(tree) {
                let item = item.split('@').next().unwrap_or(item);
                if !item.is_empty() {
                    out.push(format!("{prefix}{item}"));
                }
            }
        }
        Some(open) => {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            for item in split_top(inner) {
                expand(&format!("{prefix}{head}"), item, out);
            }
        }
    }
}

/// Splits at the commas outside braces.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The shell module `text` imports or names, if any.
fn imports_shell(text: &str) -> Option<&'static str> {
    let text = code(text);
    let paths = uses(&text);
    SHELL.iter().copied().find(|m| {
        let named = format!("crate::{m}");
        paths
            .iter()
            .any(|p| p == &named || p.starts_with(&format!("{named}::")))
            || text.contains(&format!("{named}::"))
    })
}

/// The IO path `text` imports or names, if any.
fn does_io(text: &str) -> Option<&'static str> {
    let text = code(text);
    let paths = uses(&text);
    IO.iter().copied().find(|io| {
        let bare = io.trim_end_matches("::");
        text.contains(io)
            || paths
                .iter()
                .any(|p| p.starts_with(bare) || p.contains(&format!("::{bare}")))
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
fn pure_modules_do_no_io() {
    for (file, text) in pure_files() {
        assert_eq!(does_io(&text), None, "{} does IO", file.display());
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

/// The crate's top-level modules, as `lib.rs` declares them.
fn modules() -> Vec<String> {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let mods: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    assert!(mods.len() > 20, "lib.rs's modules were found");
    mods
}

#[test]
fn the_layout_notes_name_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let layout: String = lib.lines().filter(|l| l.starts_with("//!")).collect();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let arch = readme
        .split("## Architecture")
        .nth(1)
        .expect("README has an Architecture section");
    let arch = arch.split("\n## ").next().unwrap_or(arch);
    for m in modules() {
        assert!(
            layout.contains(&format!("[`{m}`]")),
            "lib.rs's Layout does not name `{m}`"
        );
        assert!(
            arch.contains(&format!("`{m}")) || arch.contains(&format!("src/{m}")),
            "README's Architecture does not name `{m}`"
        );
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
    assert_eq!(
        imports_shell("use crate::{model::{self, x}, wire::{a, recorder::b}};"),
        None
    );
    assert_eq!(
        imports_shell("use crate::{model, a::{b, c}, recorder::{spill::{X, Y}}};"),
        Some("recorder")
    );
    assert_eq!(imports_shell("let x = crate::feed::run();"), Some("feed"));
    assert_eq!(imports_shell("use crate::fanout::Fanout; // shard"), None);
    assert_eq!(does_io("use std::{fs, io};"), Some("std::fs"));
    assert_eq!(
        does_io("use std::{collections::HashMap, net::{IpAddr, TcpStream}};"),
        Some("std::net::TcpStream")
    );
    assert_eq!(does_io("use std::net::IpAddr;"), None);
    assert_eq!(does_io("let v: redis::Value = x;"), Some("redis::"));
    assert_eq!(does_io("// no redis:: here"), None);
    assert_eq!(
        uses("use a::{b::{c, d as e}, f};"),
        vec!["a::b::c", "a::b::d", "a::f"]
    );
}
