//! The library's shape: its top-level modules
//! (or, once grouped, folders) depend on each other without cycles, so that each can be read,
//! tested and later split off on its own terms. `crate::a::…` paths and `use crate::{a, …}`
//! groups outside `#[cfg(test)]` code are the edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

/// The top-level unit a source file belongs to: `src/x.rs` and `src/x/…` are `x`.
fn unit(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first.strip_suffix(".rs") {
        Some("lib") | Some("main") => None,
        Some(m) => Some(m.to_string()),
        None if first == "bin" => None,
        None => Some(first.to_string()),
    }
}

/// The top-level units `code` names through `crate::`.
fn uses(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the first segment of each top-level item.
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        out.insert(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

#[test]
fn top_level_modules_have_no_dependency_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(u) = unit(&src, f) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        graph.entry(u.clone()).or_default().extend(uses(code).into_iter().filter(|d| *d != u));
    }
    let units: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| units.contains(d));
    }
    assert!(graph.len() > 10, "the walk found the library's modules: {:?}", graph.keys());
    // Depth-first search; a grey node met again closes a cycle.
    fn visit(u: &str, g: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, path: &mut Vec<String>) -> Option<Vec<String>> {
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
    let u = uses("use crate::{a, b::c, d::{e, f}};\nfn x() { crate::g::h(); }");
    assert_eq!(u, ["a", "b", "d", "g"].iter().map(|s| s.to_string()).collect());
}
