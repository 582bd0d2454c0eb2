//! The library's shape: its folders are layers (a folder uses only the folders listed before
//! it in `src/lib.rs`), and its modules depend on each other without cycles, so that each can
//! be read, tested and later split off on its own terms. `crate::a::…` paths and
//! `use crate::{a, …}` groups outside `#[cfg(test)]` code are the edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The folders in the order of `src/lib.rs`: each may use those before it.
const LAYERS: &[&str] =
    &["util", "mixes", "format", "sender", "batch", "abuse", "node", "pinger", "nymserv", "nymclient"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The unit a source file belongs to, `depth` path segments deep: at depth 1 `src/x.rs` and
/// `src/x/…` are `x`; at depth 2 `src/x/y.rs` is `x::y`. The crate root and `bin/` are none.
fn unit(src: &Path, file: &Path, depth: usize) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_str().unwrap().trim_end_matches(".rs").to_string())
        .filter(|c| c != "mod")
        .collect();
    match parts.first().map(String::as_str) {
        None | Some("lib") | Some("main") | Some("bin") => None,
        _ => Some(parts.into_iter().take(depth).collect::<Vec<_>>().join("::")),
    }
}

/// The units `code` names through `crate::`, `depth` segments deep.
fn uses(code: &str, depth: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        tree(&code[i + 7..], &mut Vec::new(), depth, &mut out);
    }
    out.retain(|u| !u.is_empty());
    out
}

/// One use tree (`a::b`, `a::{b, c::d}`, `{a, b}`) at the start of `s`: its paths, cut at `depth`.
fn tree(s: &str, prefix: &mut Vec<String>, depth: usize, out: &mut BTreeSet<String>) {
    if let Some(group) = s.strip_prefix('{') {
        let (mut level, mut start) = (0, 0);
        for (j, c) in group.char_indices() {
            match c {
                '{' => level += 1,
                '}' if level > 0 => level -= 1,
                ',' | '}' if level == 0 => {
                    let item = group[start..j].trim_start();
                    tree(item, &mut prefix.clone(), depth, out);
                    if c == '}' {
                        return;
                    }
                    start = j + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let id: String = s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if id.is_empty() || id == "self" {
        out.insert(prefix.join("::"));
        return;
    }
    prefix.push(id.clone());
    match s[id.len()..].strip_prefix("::") {
        Some(rest) if prefix.len() < depth => tree(rest, prefix, depth, out),
        _ => {
            out.insert(prefix.join("::"));
        }
    }
}

/// unit -> the units it uses, over the library's non-test code.
fn graph(depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(u) = unit(&src, f, depth) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        graph.entry(u.clone()).or_default().extend(uses(code, depth).into_iter().filter(|d| *d != u));
    }
    let units: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| units.contains(d));
    }
    graph
}

#[test]
fn folders_use_only_the_folders_before_them() {
    let g = graph(1);
    let folders: BTreeSet<&str> = g.keys().map(String::as_str).filter(|u| *u != "cli").collect();
    assert_eq!(folders, LAYERS.iter().copied().collect(), "src/ folders and LAYERS disagree: add a new folder to both");
    let mut wrong = Vec::new();
    for (i, layer) in LAYERS.iter().enumerate() {
        for d in &g[*layer] {
            if !LAYERS[..i].contains(&d.as_str()) {
                wrong.push(format!("{layer} uses {d}"));
            }
        }
    }
    assert!(wrong.is_empty(), "a folder uses one listed after it: {wrong:?}");
}

#[test]
fn modules_have_no_dependency_cycle() {
    let graph = graph(2);
    assert!(graph.len() > 30, "the walk found the library's modules: {:?}", graph.keys());
    // Depth-first search; a grey node met again closes a cycle.
    fn visit(
        u: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(u.to_string(), 1);
        path.push(u.to_string());
        for v in &g[u] {
            match state.get(v.as_str()) {
                Some(1) => {
                    let at = path.iter().position(|p| p == v).unwrap();
                    let mut cycle = path[at..].to_vec();
                    cycle.push(v.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(v, g, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(u.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for u in graph.keys() {
        if !state.contains_key(u.as_str()) {
            if let Some(cycle) = visit(u, &graph, &mut state, &mut Vec::new()) {
                panic!("dependency cycle between modules: {}", cycle.join(" -> "));
            }
        }
    }
}

#[test]
fn the_cycle_finder_sees_grouped_uses() {
    let code = "use crate::{a, b::c, d::{e, f}};\nfn x() { crate::g::h(); }";
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(uses(code, 1), set(&["a", "b", "d", "g"]));
    assert_eq!(uses(code, 2), set(&["a", "b::c", "d::e", "d::f", "g::h"]));
    let nested = "use crate::node::{config::{self, Config}, home};";
    assert_eq!(uses(nested, 2), set(&["node::config", "node::home"]));
}
