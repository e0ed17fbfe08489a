//! The layout's two rules, checked on the source itself (no server needed):
//!
//! 1. No import cycle: the graph of which source file imports which (through `crate::`,
//!    `super::` and child-module paths in code, not comments; re-exports count) has no
//!    cycle.
//! 2. The core is pure: nothing under `src/core/` imports a driver module of this crate
//!    (`client`, `blocking`, `io`, `engine`) or a runtime, ring or socket crate.
//!
//! A failure names the cycle or the offending line.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `src/core/resp/decode.rs` -> `core::resp::decode`,
/// `src/core/mod.rs` -> `core`, `src/lib.rs` -> `` (the crate root).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a line: without `//` comments (doc comments included) and string contents
/// that could name a path by accident.
fn code_of(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Paths starting `crate::` or `super::` in a line, resolved to module paths as far as
/// their words go (the caller keeps the longest prefix that is a file).
fn paths_in(code: &str, module: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            if at > 1 && &code[at - 2..at] == "::" {
                continue;
            }
            let rest: String = code[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let words: Vec<String> = rest
                .split("::")
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
            let mut base: Vec<String> = if module.is_empty() {
                Vec::new()
            } else {
                module.split("::").map(str::to_string).collect()
            };
            // A file's own module is `base` (`foo.rs` and `foo/mod.rs` alike), so each
            // `super` drops one word.
            let mut words = words.into_iter().peekable();
            match words.next().as_deref() {
                Some("crate") => base.clear(),
                Some("super") => {
                    base.pop();
                    while words.peek().map(String::as_str) == Some("super") {
                        words.next();
                        base.pop();
                    }
                }
                _ => continue,
            }
            base.extend(words);
            found.push(base);
        }
    }
    found
}

/// Paths into a child module (`pubsub::Subscriber` in a file that declares `mod pubsub;`).
fn child_paths_in(code: &str, module: &str, children: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for child in children {
        let needle = format!("{child}::");
        for (at, _) in code.match_indices(&needle) {
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut path: Vec<String> = if module.is_empty() {
                Vec::new()
            } else {
                module.split("::").map(str::to_string).collect()
            };
            path.push(child.clone());
            found.push(path);
        }
    }
    found
}

struct Crate {
    /// Module path -> file.
    files: BTreeMap<String, PathBuf>,
    /// Module path -> modules it imports.
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn read_crate() -> Crate {
    // This package is `tests/`; the library's sources are beside it.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src");
    let mut all = Vec::new();
    sources(&src, &mut all);
    let files: BTreeMap<String, PathBuf> = all
        .iter()
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    // A wrong path would make every check below pass on nothing.
    assert!(
        files.contains_key("core::cluster") && files.len() > 50,
        "the library's sources are not at {}",
        src.display()
    );
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &files {
        let text = fs::read_to_string(file).expect("read source");
        // `mod x;` declares a child whose items this file may name as `x::...`.
        let children: Vec<String> = text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let l = l
                    .strip_prefix("pub(crate) ")
                    .or_else(|| l.strip_prefix("pub "))
                    .unwrap_or(l);
                l.strip_prefix("mod ")?
                    .strip_suffix(';')
                    .map(str::to_string)
            })
            .collect();
        let mut in_tests = false;
        for line in text.lines() {
            // Unit tests may reach anywhere; the rule is about the code itself.
            if line.starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            if in_tests {
                continue;
            }
            let mut paths = paths_in(code_of(line), module);
            paths.extend(child_paths_in(code_of(line), module, &children));
            for path in paths {
                // The longest prefix of the path that is a module of its own file.
                let target = (0..=path.len())
                    .rev()
                    .map(|n| path[..n].join("::"))
                    .find(|m| files.contains_key(m));
                if let Some(target) = target {
                    if &target != module && !target.is_empty() {
                        edges.entry(module.clone()).or_default().insert(target);
                    }
                }
            }
        }
    }
    Crate { files, edges }
}

/// A cycle in the graph, if any, as the modules along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, edges, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_import_cycle_between_source_files() {
    let krate = read_crate();
    assert!(
        krate.files.len() > 20 && krate.edges.len() > 20,
        "the checker read too little: {} files, {} with imports",
        krate.files.len(),
        krate.edges.len()
    );
    if let Some(cycle) = find_cycle(&krate.edges) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_core_imports_no_driver_runtime_or_socket() {
    let krate = read_crate();
    let drivers = ["client", "blocking", "io", "engine", "commands"];
    let mut offences = Vec::new();
    for (module, targets) in &krate.edges {
        if !module.starts_with("core") {
            continue;
        }
        for target in targets {
            let top = target.split("::").next().unwrap_or("");
            if drivers.contains(&top) {
                offences.push(format!("{module} imports {target}"));
            }
        }
    }
    // Paths, not words: `std::net::IpAddr` is a value, `TcpStream` a socket.
    let banned = [
        "tokio::",
        "tokio_uring::",
        "io_uring::",
        "compio::",
        "libc::",
        "socket2::",
        "std::net::Tcp",
        "std::net::Udp",
        "std::net::ToSocketAddrs",
        "std::thread::",
        "Instant::now(",
        "SystemTime::now(",
    ];
    for (module, file) in &krate.files {
        if !module.starts_with("core") {
            continue;
        }
        let text = fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            if line.starts_with("#[cfg(test)]") {
                break;
            }
            let code = code_of(line);
            for word in banned {
                let hit = code.match_indices(word).any(|(i, _)| {
                    let before = code[..i].chars().last();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    offences.push(format!(
                        "{}:{}: {word}: {}",
                        file.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "the core is not pure:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle() {
    // The checker itself: a graph with a cycle is caught, one without is not.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let p = paths_in("use super::super::x::Y;", "core::resp::decode");
    assert_eq!(p, vec![vec!["core".to_string(), "x".into(), "Y".into()]]);
    let p = child_paths_in("pub use pubsub::Subscriber;", "client", &["pubsub".into()]);
    assert_eq!(p, vec![vec!["client".to_string(), "pubsub".into()]]);
}
