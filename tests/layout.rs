//! The layout rules of `src/` a newcomer relies on, checked on the source
//! itself: no two files of the library import each other, directly or
//! around a circle, and no file is longer than 600 lines before its tests.
//!
//! An import is any path that starts with `crate::`, `super::` or `self::`
//! in a file's code (comments, strings and `#[cfg(test)]` items left out),
//! resolved to the longest module path that is a file. A `mod.rs` that
//! re-exports from its children depends on them, as any other importer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines a file may have before its tests.
const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file before its first `#[cfg(test)]` item.
fn without_tests(text: &str) -> &str {
    match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The module path of a library file: `src/broker/net/mod.rs` is
/// `broker::net`, `src/broker/net/tls.rs` is `broker::net::tls`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path, // ::
    Open,
    Close,
    Comma,
    Other,
}

/// The tokens of `code` that paths are made of; comments, strings and
/// character literals are skipped.
fn tokens(code: &str) -> Vec<Tok> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(Tok::Other);
        } else if c == b'r' && (b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"')) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            while b.get(j) == Some(&b'#') {
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            i = j + 1;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push(Tok::Other);
        } else if c == b'\'' {
            // A character literal ('x', '\n') or a lifetime ('a).
            if b.get(i + 2) == Some(&b'\'') {
                i += 3;
            } else if b.get(i + 1) == Some(&b'\\') {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else {
                i += 1;
            }
            out.push(Tok::Other);
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(code[start..i].to_string()));
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push(Tok::Path);
            i += 2;
        } else {
            out.push(match c {
                b'{' => Tok::Open,
                b'}' => Tok::Close,
                b',' => Tok::Comma,
                _ if c.is_ascii_whitespace() => {
                    i += 1;
                    continue;
                }
                _ => Tok::Other,
            });
            i += 1;
        }
    }
    out
}

/// Parses the rest of a path after `prefix` at `toks[*i]` (which follows a
/// `::`), expanding groups: `a::{b, c::d}` gives `a::b` and `a::c::d`.
fn parse_rest(toks: &[Tok], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    match toks.get(*i) {
        Some(Tok::Ident(name)) => {
            *i += 1;
            let mut path = prefix;
            path.push(name.clone());
            if toks.get(*i) == Some(&Tok::Path) {
                *i += 1;
                parse_rest(toks, i, path, out);
            } else {
                out.push(path);
            }
        }
        Some(Tok::Open) => {
            *i += 1;
            loop {
                match toks.get(*i) {
                    Some(Tok::Close) | None => {
                        *i += 1;
                        return;
                    }
                    Some(Tok::Comma) => *i += 1,
                    Some(Tok::Ident(_)) | Some(Tok::Open) => {
                        parse_rest(toks, i, prefix.clone(), out)
                    }
                    Some(_) => *i += 1, // `*`
                }
            }
        }
        _ => out.push(prefix),
    }
}

/// Every path of `code` that starts at `crate`, `super` or `self`, made
/// absolute, for a file whose module is `module`. Inline modules
/// (`mod name { … }`) move `super` and `self` with them.
fn imports(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let toks = tokens(code);
    let mut out = Vec::new();
    // Inline modules open at a brace depth: (depth, name).
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(d, _)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Open)) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((depth, name.clone()));
                }
            }
            Tok::Ident(first)
                if ["crate", "super", "self"].contains(&first.as_str())
                    && toks.get(i + 1) == Some(&Tok::Path)
                    && (i == 0 || toks[i - 1] != Tok::Path) =>
            {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(_, n)| n.clone()));
                let mut paths = Vec::new();
                let mut j = i;
                parse_rest(&toks, &mut j, Vec::new(), &mut paths);
                for path in paths {
                    let mut abs: Vec<String> = Vec::new();
                    let mut segments = path.into_iter().peekable();
                    match segments.peek().map(String::as_str) {
                        Some("crate") => {
                            segments.next();
                        }
                        _ => abs = here.clone(),
                    }
                    for s in segments {
                        match s.as_str() {
                            "super" => {
                                abs.pop();
                            }
                            "self" => {}
                            _ => abs.push(s),
                        }
                    }
                    out.push(abs);
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The library's files by module path (the binaries are crates of their own).
fn library_files() -> BTreeMap<Vec<String>, PathBuf> {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .filter(|f| {
            let rel = f.strip_prefix(&src).unwrap();
            !rel.starts_with("bin") && rel != Path::new("main.rs") && rel != Path::new("build.rs")
        })
        .map(|f| (module_of(&src, &f), f))
        .collect()
}

#[test]
fn no_file_of_src_imports_another_that_imports_it_back() {
    let files = library_files();
    let name = |m: &[String]| match m.is_empty() {
        true => "lib.rs".to_string(),
        false => m.join("::"),
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let deps = graph.entry(name(module)).or_default();
        for path in imports(without_tests(&text), module) {
            // The longest prefix that is a file; the crate root only lists
            // modules, so a path to it is not a dependency.
            let target = (1..=path.len())
                .rev()
                .map(|n| &path[..n])
                .find(|p| files.contains_key(*p));
            if let Some(target) = target {
                if target != module.as_slice() {
                    deps.insert(name(target));
                }
            }
        }
    }
    assert!(
        graph
            .get("broker::client::session")
            .is_some_and(|d| !d.is_empty()),
        "the import scan found nothing: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import circle in src/: {}", cycle.join(" -> "));
    }
}

#[test]
fn no_file_of_src_is_over_600_lines_before_its_tests() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let lines = without_tests(&text).lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}

/// The scan itself: a group of imports, `super` in an inline module, and a
/// path in a comment or a string that is not an import.
#[test]
fn the_import_scan_reads_groups_inline_modules_and_skips_comments() {
    let module = vec!["a".to_string(), "b".to_string()];
    let code = r#"
        use crate::x::{y, z::{w, self}};
        // use crate::commented::Out;
        const S: &str = "crate::in_string::Out";
        mod inner {
            use super::sibling::T;
        }
        fn f() { super::up::g(); let c = 'x'; }
    "#;
    let got: BTreeSet<String> = imports(code, &module)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    let want: BTreeSet<String> = ["x::y", "x::z::w", "x::z", "a::b::sibling::T", "a::up::g"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(got, want);
    let mut graph = BTreeMap::new();
    graph.insert("p".to_string(), BTreeSet::from(["q".to_string()]));
    graph.insert("q".to_string(), BTreeSet::from(["p".to_string()]));
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["p".to_string(), "q".to_string(), "p".to_string()])
    );
}
