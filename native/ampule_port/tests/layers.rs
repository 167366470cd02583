//! The port's layering, checked: every `crate::` path in `src/` (a `use`, a group
//! `use crate::{a, b}`, a `super::`, a path written inline) must name a module of its own
//! layer or a lower one in the table of `lib.rs`'s Layout, a kind of container (L4) must
//! never name another kind, and no modules may import each other in a circle. A failure
//! names the file and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layer whose modules are the kinds of container.
const KINDS: u8 = 4;

/// Module name → layer, from the `## Ln` headings and `- [`name`]` items of the Layout.
fn layer_table(lib: &str) -> BTreeMap<String, u8> {
    let mut table = BTreeMap::new();
    let mut layer = None;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if let Some(rest) = doc.strip_prefix("## L") {
            layer = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let (Some(l), Some(item)) = (layer, doc.strip_prefix("- ")) {
            let name = item
                .trim_start_matches('[')
                .trim_start_matches('`')
                .split('`')
                .next()
                .unwrap_or("");
            if !name.is_empty() {
                table.insert(name.to_string(), l);
            }
        }
    }
    table
}

/// The source with comments and the contents of string and character literals blanked
/// (newlines kept, so that offsets still give line numbers).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'r' && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#')) {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            let end = src[start..]
                .find(&close)
                .map_or(b.len(), |n| start + n + close.len());
            blank(&mut out, start, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' && (b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\')) {
            let end = src[i + 1..].find('\'').map_or(b.len(), |n| i + 1 + n + 1);
            let end = if b.get(i + 1) == Some(&b'\\') {
                src[i + 3..].find('\'').map_or(b.len(), |n| i + 3 + n + 1)
            } else {
                end
            };
            blank(&mut out, i, end);
            i = end;
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of each item of a `{...}` group that starts `s`.
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    expect = true;
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => {
                expect = true;
                continue;
            }
            _ => {}
        }
        if depth == 1 && expect && !c.is_whitespace() {
            heads.push(ident_at(&s[i..]).to_string());
            expect = false;
        }
    }
    heads
}

/// One module path that a file names: the top-level module it names, and the line.
#[derive(Debug, PartialEq, Eq)]
struct Import {
    line: usize,
    module: String,
}

/// Every top-level module the file at `module_path` (e.g. `["app", "boot"]`) names, through
/// `crate::`, `super::` or (in the binary) `ampule_port::`.
fn imports(src: &str, module_path: &[&str]) -> Vec<Import> {
    let code = code_only(src);
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    // Braces that opened an inline `mod name {`, for `super::` inside it.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let c = rest.as_bytes()[0];
        let word_start = i == 0 || {
            let p = code.as_bytes()[i - 1];
            !(p.is_ascii_alphanumeric() || p == b'_' || p == b':')
        };
        if c == b'{' {
            depth += 1;
        } else if c == b'}' {
            if inline_mods.last() == Some(&depth) {
                inline_mods.pop();
            }
            depth = depth.saturating_sub(1);
        } else if word_start && rest.starts_with("mod ") {
            let after = rest[4..].trim_start();
            let name = ident_at(after);
            if after[name.len()..].trim_start().starts_with('{') {
                inline_mods.push(depth + 1);
            }
        } else if word_start && (rest.starts_with("crate::") || rest.starts_with("ampule_port::")) {
            let after = &rest[rest.find("::").unwrap_or(0) + 2..];
            let heads = if after.starts_with('{') {
                group_heads(after)
            } else {
                vec![ident_at(after).to_string()]
            };
            for module in heads.into_iter().filter(|h| h != "self") {
                found.push(Import {
                    line: line_of(i),
                    module,
                });
            }
        } else if word_start && rest.starts_with("super::") {
            let mut ups = 0usize;
            let mut after = rest;
            while let Some(r) = after.strip_prefix("super::") {
                ups += 1;
                after = r;
            }
            // Inline modules first; then the file's own module path.
            let above_file = ups.saturating_sub(inline_mods.len());
            let path = &module_path[..module_path.len().saturating_sub(above_file)];
            let module = match path.first() {
                Some(top) => top.to_string(),
                None if after.starts_with('{') => {
                    for module in group_heads(after) {
                        found.push(Import {
                            line: line_of(i),
                            module,
                        });
                    }
                    i += rest.len() - after.len();
                    continue;
                }
                None => ident_at(after).to_string(),
            };
            found.push(Import {
                line: line_of(i),
                module,
            });
            i += rest.len() - after.len();
            continue;
        }
        i += 1;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `app/boot.rs` → `["app", "boot"]`, `app/mod.rs` → `["app"]`, `main.rs` → `["main"]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    parts
}

/// What is wrong with the sources `files` (path relative to `src/`, text) against `table`.
fn violations(table: &BTreeMap<String, u8>, files: &[(PathBuf, String)]) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, src) in files {
        let path = module_path(rel);
        let path_refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let unit = path[0].clone();
        if unit == "lib" {
            continue;
        }
        let Some(&from) = table.get(&unit) else {
            wrong.push(format!(
                "src/{}: module `{unit}` is not in lib.rs's Layout",
                rel.display()
            ));
            continue;
        };
        for Import { line, module } in imports(src, &path_refs) {
            let at = format!("src/{}:{line}", rel.display());
            if module == unit {
                continue;
            }
            let Some(&to) = table.get(&module) else {
                wrong.push(format!(
                    "{at}: `{module}` is not a module in lib.rs's Layout"
                ));
                continue;
            };
            if to > from {
                wrong.push(format!(
                    "{at}: `{unit}` (L{from}) imports `{module}` (L{to}), a higher layer"
                ));
            } else if from == KINDS && to == KINDS {
                wrong.push(format!(
                    "{at}: `{unit}` imports `{module}`: a kind of container never imports another"
                ));
            }
            edges.entry(unit.clone()).or_default().insert(module);
        }
    }
    wrong.extend(circles(&edges));
    wrong
}

/// Every import circle among modules, as `a → b → a`.
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        at: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut BTreeSet<String>,
    ) {
        if let Some(k) = stack.iter().position(|m| m == at) {
            let mut circle = stack[k..].to_vec();
            circle.push(at.to_string());
            found.insert(format!("import circle: {}", circle.join(" → ")));
            return;
        }
        if !done.insert(at.to_string()) {
            return;
        }
        stack.push(at.to_string());
        for next in edges.get(at).into_iter().flatten() {
            visit(next, edges, stack, done, found);
        }
        stack.pop();
    }
    let mut found = BTreeSet::new();
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, edges, &mut Vec::new(), &mut done, &mut found);
    }
    found.into_iter().collect()
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_imports_only_its_layer_or_lower_and_no_kind_another() {
    let src = src_dir();
    let table = layer_table(&fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(
        table.len() > 30,
        "the Layout's table was not read: {table:?}"
    );
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths.sort();
    let files: Vec<(PathBuf, String)> = paths
        .iter()
        .map(|p| {
            (
                p.strip_prefix(&src).unwrap().to_path_buf(),
                fs::read_to_string(p).unwrap(),
            )
        })
        .collect();
    let units: BTreeSet<String> = files
        .iter()
        .map(|(rel, _)| module_path(rel)[0].clone())
        .collect();
    for listed in table.keys() {
        assert!(
            units.contains(listed),
            "lib.rs lists `{listed}`, which src/ does not have"
        );
    }
    let wrong = violations(&table, &files);
    assert!(wrong.is_empty(), "\n{}\n", wrong.join("\n"));
}

#[test]
fn unsafe_code_is_denied_but_in_lxc() {
    let src = src_dir();
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    assert!(lib.contains("#![deny(unsafe_code)]"));
    assert!(lib.contains("#[allow(unsafe_code)]\npub mod lxc;"));
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    for p in paths {
        let text = code_only(&fs::read_to_string(&p).unwrap());
        let allows = text.matches("allow(unsafe_code)").count();
        let expected = usize::from(p.ends_with("lib.rs"));
        assert_eq!(allows, expected, "{}", p.display());
    }
}

#[cfg(test)]
mod the_checker {
    use super::*;

    fn modules(src: &str, path: &[&str]) -> Vec<(usize, String)> {
        imports(src, path)
            .into_iter()
            .map(|i| (i.line, i.module))
            .collect()
    }

    #[test]
    fn finds_uses_groups_inline_paths_and_supers() {
        let src = "use crate::a::B;\nuse crate::{c, d::{self, E}};\n\
                   fn f() { crate::g::h(); }\nuse super::i;\n\
                   // use crate::comment;\nlet s = \"crate::string\";\n\
                   mod tests {\n    use super::*;\n    use crate::j;\n}\n";
        assert_eq!(
            modules(src, &["x", "y"]),
            vec![
                (1, "a".into()),
                (2, "c".into()),
                (2, "d".into()),
                (3, "g".into()),
                (4, "x".into()),
                (8, "x".into()),
                (9, "j".into()),
            ]
        );
        assert_eq!(modules("use super::k;", &["x"]), vec![(1, "k".into())]);
        assert_eq!(
            modules("use super::{k, l};", &["x"]),
            vec![(1, "k".into()), (1, "l".into())]
        );
        assert_eq!(
            modules("use ampule_port::m::N;", &["main"]),
            vec![(1, "m".into())]
        );
    }

    #[test]
    fn flags_upward_sideways_and_circular_imports_by_file_and_line() {
        let table: BTreeMap<String, u8> = [("low", 1), ("mid", 1), ("app", 4), ("system", 4)]
            .into_iter()
            .map(|(m, l)| (m.to_string(), l))
            .collect();
        let files = vec![
            (
                PathBuf::from("low.rs"),
                "\nuse crate::app::X;\nuse crate::mid;\n".to_string(),
            ),
            (PathBuf::from("mid.rs"), "use crate::low;\n".to_string()),
            (PathBuf::from("app/mod.rs"), "use crate::low;\n".to_string()),
            (
                PathBuf::from("system/mod.rs"),
                "use crate::{app, low};\n".to_string(),
            ),
        ];
        let wrong = violations(&table, &files);
        assert_eq!(
            wrong,
            vec![
                "src/low.rs:2: `low` (L1) imports `app` (L4), a higher layer".to_string(),
                "src/system/mod.rs:1: `system` imports `app`: a kind of container never imports another".to_string(),
                "import circle: app → low → app".to_string(),
                "import circle: low → mid → low".to_string(),
            ]
        );
    }

    #[test]
    fn reads_the_layout_table() {
        let lib =
            "//! ## L0 — wire\n//! - [`frame`]: x\n//! ## L6 — the program\n//! - `main`: y\n";
        let t = layer_table(lib);
        assert_eq!(t.get("frame"), Some(&0));
        assert_eq!(t.get("main"), Some(&6));
    }
}
