//! No import circle: in each crate, the graph of which module (file) names which other module,
//! through `crate::…` and `super::…` paths, has no cycle. A module and its own children are not
//! an edge either way (the parent declares them; they may use its items). `ARCHITECTURE.md`
//! draws the gateway's top-level graph.

use std::collections::{BTreeMap, BTreeSet};

use crate::tidy::crate_sources;

/// A file's module path in its crate: `gateway/src/relay/chat_stream.rs` is
/// (`gateway`, [`relay`, `chat_stream`]); `lib.rs`, `main.rs` and `mod.rs` name their directory.
fn module_of(rel: &str) -> (String, Vec<String>) {
    let (krate, path) = rel.split_once("/src/").unwrap();
    let mut parts: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    if parts.first().is_some_and(|p| p == "bin") {
        parts.clear();
    }
    (krate.to_owned(), parts)
}

/// The code of a file without its unit tests and comments.
fn code_only(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The lowercase path segments at the start of `s` (`a::b::C` gives [a, b]) and where they end.
fn segments(s: &str) -> (Vec<String>, usize) {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    loop {
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let seg = &s[start..i];
        if seg.is_empty() || !seg.as_bytes()[0].is_ascii_lowercase() {
            return (out, start);
        }
        out.push(seg.to_owned());
        if s[i..].starts_with("::") && s[i + 2..].starts_with(|c: char| c.is_ascii_lowercase()) {
            i += 2;
        } else {
            return (out, i);
        }
    }
}

/// The items of a `{…}` group at the start of `s` (after its `{`), split at its own commas.
fn group_items(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut items) = (0usize, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&s[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

/// `base` followed by the path at the start of `rest`, and, when that path opens a group
/// (`a::{b, c::{d}}`), every path in it.
fn paths_from(base: &[String], rest: &str, out: &mut Vec<Vec<String>>) {
    let rest = rest.trim_start();
    let (segs, end) = segments(rest);
    let mut path = base.to_vec();
    path.extend(segs);
    let after = &rest[end..];
    let group = after
        .strip_prefix("::{")
        .or_else(|| (end == 0).then(|| after.strip_prefix('{')).flatten());
    if let Some(group) = group {
        for item in group_items(group) {
            paths_from(&path, item, out);
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// Every module path a file names: `crate::a::b`, `crate::a::{b, c::d}` and `super::x`,
/// relative to the file's own module `own` (`super` is the parent of `own`, in `a.rs` and
/// `a/mod.rs` alike).
fn named_paths(code: &str, own: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && is_ident(code.as_bytes()[i - 1]) {
            continue;
        }
        paths_from(&[], &code[i + "crate::".len()..], &mut out);
    }
    for (i, _) in code.match_indices("super::") {
        if i > 0 && (is_ident(code.as_bytes()[i - 1]) || code[..i].ends_with("super::")) {
            continue;
        }
        let mut rest = &code[i..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        paths_from(&own[..own.len().saturating_sub(ups)], rest, &mut out);
    }
    out
}

/// The module graph of every crate, file by file: (crate, module) -> modules it names.
fn graphs() -> BTreeMap<String, BTreeMap<Vec<String>, BTreeSet<Vec<String>>>> {
    let sources = crate_sources();
    let mut known: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (rel, _) in &sources {
        let (krate, own) = module_of(rel);
        known.entry(krate).or_default().insert(own);
    }
    let mut graphs: BTreeMap<String, BTreeMap<Vec<String>, BTreeSet<Vec<String>>>> =
        BTreeMap::new();
    for (rel, text) in &sources {
        let (krate, own) = module_of(rel);
        let modules = &known[&krate];
        let code = code_only(text);
        let edges = graphs
            .entry(krate)
            .or_default()
            .entry(own.clone())
            .or_default();
        for path in named_paths(&code, &own) {
            // The longest prefix of the path that is a module of this crate.
            let Some(dst) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            let related = dst.starts_with(&own) || own.starts_with(&dst);
            if !related {
                edges.insert(dst);
            }
        }
    }
    graphs
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn find_cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|m| m.join("::")).collect();
                    cycle.push(next.join("::"));
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(c) = visit(next, graph, marks, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node) {
            if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_module_or_file_imports_in_a_circle() {
    let graphs = graphs();
    assert!(
        graphs["gateway"].len() > 60,
        "the gateway's files were all read"
    );
    let relay = &graphs["gateway"][&vec!["relay".to_owned(), "chat_stream".to_owned()]];
    assert!(
        relay.contains(&vec!["relay".to_owned(), "attempts".to_owned()]),
        "edges are found: {relay:?}"
    );
    for (krate, graph) in &graphs {
        if let Some(cycle) = find_cycle(graph) {
            panic!("an import circle in {krate}: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    graph.entry(m("a")).or_default().insert(m("b::c"));
    graph.entry(m("b::c")).or_default().insert(m("d"));
    graph.entry(m("d")).or_default().insert(m("a"));
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b::c".into(), "d".into(), "a".into()])
    );
    let code = "use crate::{ledger::{Ledger}, relay::chat_stream};\nuse super::super::x::Y;";
    let paths = named_paths(code, &m("relay::attempts::deep"));
    assert!(paths.contains(&m("ledger")), "{paths:?}");
    assert!(paths.contains(&m("relay::chat_stream")), "{paths:?}");
    assert!(paths.contains(&m("relay::x")), "{paths:?}");
}
