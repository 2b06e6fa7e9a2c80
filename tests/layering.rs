//! The architecture's rules, checked on the source so they stay true as code is added: the
//! pure modules import nothing from the IO shell (`shard`, `feed`, `server`, and the IO parts
//! features keep in their folders: `history::recorder`, `history::querier`, `auth::verifier`), do
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
    "src/redis_url.rs",
    "src/history",
];

const SHELL: &[&str] = &[
    "shard",
    "feed",
    "server",
    "history::recorder",
    "history::querier",
    "auth::verifier",
];

/// The IO parts a feature keeps in its folder (besides its `jobs.rs`): not pure, and not to
/// be imported by the pure code.
const IO_PARTS: &[&str] = &[
    "src/history/recorder",
    "src/history/querier.rs",
    "src/auth/verifier.rs",
];

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
        .filter(|f| !IO_PARTS.iter().any(|p| f.starts_with(root.join(p))))
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
    let parts: Vec<&str> = flat.split("use ").collect();
    for (before, part) in parts.iter().zip(parts.iter().skip(1)) {
        // `use` as a word (not the end of `because`).
        if before.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue;
        }
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
            let close = tree.rfind('}').filter(|c| *c > open).unwrap_or(tree.len());
            let inner = &tree[open + 1..close];
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
        imports_shell("use crate::{model, a::{b, c}, history::recorder::{spill::{X, Y}}};"),
        Some("history::recorder")
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

// Import circles, at file level: an arrow runs from a file to the file that defines a name it
// takes (`use` paths and paths in code, re-exports followed to their definition; a module
// named as a whole points at its file). Re-exports themselves and test code are not arrows.

/// The module file of `segs` below `src/` (`["alarm", "jobs"]` → `src/alarm/jobs.rs`) and how
/// many segments were modules.
fn module_file(src: &Path, segs: &[&str]) -> (PathBuf, usize) {
    let mut file = src.join("lib.rs");
    let mut dir = src.to_path_buf();
    let mut n = 0;
    for s in segs {
        let (as_file, as_dir) = (dir.join(format!("{s}.rs")), dir.join(s).join("mod.rs"));
        if as_file.exists() {
            file = as_file;
        } else if as_dir.exists() {
            file = as_dir;
        } else {
            break;
        }
        dir = dir.join(s);
        n += 1;
    }
    (file, n)
}

/// The module path of `file` (`src/alarm/mod.rs` → `["alarm"]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
        segs.pop();
    }
    segs
}

/// `text` up to its inline tests (`#[cfg(test)]` at the start of a line).
fn non_test(text: &str) -> &str {
    text.find("\n#[cfg(test)]\nmod tests {")
        .map_or(text, |i| &text[..i])
}

/// Whether `text` defines an item called `name`.
fn defines(text: &str, name: &str) -> bool {
    let kinds = [
        "fn",
        "struct",
        "enum",
        "trait",
        "type",
        "const",
        "static",
        "macro_rules!",
    ];
    text.lines().any(|l| {
        let l = l.trim_start();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub(super) "));
        let l = l.unwrap_or_else(|| l.unwrap_or_default());
        let l = l.strip_prefix("pub ").unwrap_or(l);
        let l = l.strip_prefix("async ").unwrap_or(l);
        kinds.iter().any(|k| {
            l.strip_prefix(k).is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with(name)
                    && !rest[name.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    && rest.len() > name.len()
            })
        })
    })
}

/// The file that defines what `path` (absolute, from the crate root) names, following
/// re-exports (at most a few hops).
fn definer(src: &Path, path: &[String], hops: usize) -> Option<PathBuf> {
    let segs: Vec<&str> = path.iter().map(String::as_str).collect();
    let (file, n) = module_file(src, &segs);
    if n == 0 && !segs.is_empty() {
        return None;
    }
    let rest = &segs[n..];
    let Some(name) = rest.first() else {
        return Some(file);
    };
    let text = std::fs::read_to_string(&file).ok()?;
    let text = code(non_test(&text));
    if defines(&text, name) || hops == 0 {
        return Some(file);
    }
    let here = module_of(src, &file);
    for l in text.split(';') {
        let l = l.trim();
        let Some(tree) = l.strip_prefix("pub use ") else {
            continue;
        };
        for p in uses(&format!("use {tree};")) {
            let tail = p.rsplit("::").next().unwrap_or(&p);
            if tail == *name {
                if let Some(abs) = absolute(src, &here, &file, &p) {
                    return definer(src, &abs, hops - 1);
                }
            }
        }
    }
    Some(file)
}

/// `path` as written in the module `here` (file `file`) → from the crate root; `None` for
/// other crates.
fn absolute(src: &Path, here: &[String], file: &Path, path: &str) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = here.to_vec();
    let mut rest = &segs[..];
    match rest.first().copied() {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        // A child module of this one (2018 paths), or another crate.
        Some(first) => {
            let dir = if file.ends_with("mod.rs") || file.ends_with("lib.rs") {
                file.parent().unwrap().to_path_buf()
            } else {
                file.with_extension("")
            };
            let child =
                dir.join(format!("{first}.rs")).exists() || dir.join(first).join("mod.rs").exists();
            if !child || dir.strip_prefix(src).is_err() {
                return None;
            }
        }
        None => return None,
    }
    base.extend(
        rest.iter()
            .filter(|s| **s != "*" && **s != "self")
            .map(|s| s.to_string()),
    );
    Some(base)
}

/// The paths `text` names in code: `crate::a::b`, `super::x::y`.
fn code_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            let before = text[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let end = text[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(text.len(), |e| at + e);
            out.push(text[at..end].trim_end_matches(':').to_string());
        }
    }
    out
}

/// Every arrow between the crate's files (`src/`), by (from, to).
fn arrows(src: &Path) -> std::collections::BTreeSet<(PathBuf, PathBuf)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = std::collections::BTreeSet::new();
    for f in files {
        if f.file_name()
            .is_some_and(|n| n == "tests.rs" || n == "main.rs")
        {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let text = code(non_test(&text));
        let here = module_of(src, &f);
        // Re-exports are doors, not use.
        let used: String = text
            .split(';')
            .filter(|s| !s.trim_start().starts_with("pub use "))
            .collect::<Vec<_>>()
            .join(";");
        let mut paths = uses(&used);
        paths.extend(code_paths(&used));
        for p in paths {
            let Some(abs) = absolute(src, &here, &f, &p) else {
                continue;
            };
            if let Some(to) = definer(src, &abs, 4) {
                if to != f {
                    out.insert((f.clone(), to));
                }
            }
        }
    }
    out
}

/// The circles among `arrows` (strongly connected sets of more than one file).
fn circles(arrows: &std::collections::BTreeSet<(PathBuf, PathBuf)>) -> Vec<Vec<PathBuf>> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut next: BTreeMap<&PathBuf, Vec<&PathBuf>> = BTreeMap::new();
    for (a, b) in arrows {
        next.entry(a).or_default().push(b);
    }
    let reach = |from: &PathBuf| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(n) = todo.pop() {
            for m in next.get(n).into_iter().flatten() {
                if seen.insert(*m) {
                    todo.push(m);
                }
            }
        }
        seen
    };
    let nodes: BTreeSet<&PathBuf> = arrows.iter().flat_map(|(a, b)| [a, b]).collect();
    let reaches: BTreeMap<&PathBuf, BTreeSet<&PathBuf>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) || !reaches[n].contains(n) {
            continue;
        }
        let circle: Vec<PathBuf> = nodes
            .iter()
            .filter(|m| reaches[n].contains(*m) && reaches[*m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        for m in &circle {
            done.insert(m.clone());
        }
        done.insert((*n).clone());
        out.push(circle);
    }
    out
}

#[test]
fn no_file_imports_itself_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let arrows = arrows(&src);
    assert!(
        arrows.len() > 100,
        "the arrows were found: {}",
        arrows.len()
    );
    let found = circles(&arrows);
    let show = |c: &Vec<PathBuf>| {
        let inside: Vec<String> = arrows
            .iter()
            .filter(|(a, b)| c.contains(a) && c.contains(b))
            .map(|(a, b)| {
                format!(
                    "  {} -> {}",
                    a.strip_prefix(&src).unwrap().display(),
                    b.strip_prefix(&src).unwrap().display()
                )
            })
            .collect();
        inside.join("\n")
    };
    let report: Vec<String> = found.iter().map(show).collect();
    assert!(
        found.is_empty(),
        "import circles:\n{}",
        report.join("\n--\n")
    );
}

#[test]
fn the_circle_check_sees_arrows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let a = arrows(&src);
    let has = |from: &str, to: &str| a.contains(&(src.join(from), src.join(to)));
    assert!(has("api/control.rs", "control/jobs.rs"), "a use path");
    assert!(has("ws/cmd/control.rs", "control/jobs.rs"), "a use path");
    assert!(has("feed/collect.rs", "feed/mod.rs"), "super::Feed");
    assert!(has("shard/mod.rs", "job.rs"), "a re-export followed");
    assert!(
        !has("feed/mod.rs", "feed/collect.rs"),
        "a re-export is not an arrow"
    );
    let two = [
        (PathBuf::from("a"), PathBuf::from("b")),
        (PathBuf::from("b"), PathBuf::from("a")),
        (PathBuf::from("b"), PathBuf::from("c")),
    ];
    assert_eq!(circles(&two.into_iter().collect()).len(), 1);
}
