//! The library's modules import one way: no module reaches, directly or
//! through others, back into a module that imports it. Read from the source
//! as written (every `crate::name` outside test code), so a new cycle fails
//! here with the modules and the files that tie it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules it names, with one file that does.
fn imports() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let module = relative
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let mut names = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for part in group.split(',') {
                    names.insert(part.trim().split("::").next().unwrap().to_string());
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
        for name in names {
            // `crate::Error` and friends are re-exports at the root, not modules.
            if name.is_empty() || name == module || name.starts_with(char::is_uppercase) {
                continue;
            }
            graph
                .entry(module.clone())
                .or_default()
                .entry(name)
                .or_insert_with(|| relative.clone());
        }
    }
    graph
}

#[test]
fn modules_import_one_way() {
    let graph = imports();
    assert!(
        graph.contains_key("engine") && graph.contains_key("steps"),
        "{graph:?}"
    );
    // Depth-first search for a path from a module's imports back to itself.
    for start in graph.keys() {
        let mut stack: Vec<(String, Vec<String>)> = graph[start]
            .keys()
            .map(|next| (next.clone(), vec![start.clone(), next.clone()]))
            .collect();
        let mut seen = BTreeSet::new();
        while let Some((module, path)) = stack.pop() {
            if module == *start {
                let ties: Vec<String> = path
                    .windows(2)
                    .map(|pair| {
                        format!(
                            "{} -> {} (in src/{})",
                            pair[0], pair[1], graph[&pair[0]][&pair[1]]
                        )
                    })
                    .collect();
                panic!("import cycle: {}", ties.join(", "));
            }
            if !seen.insert(module.clone()) {
                continue;
            }
            for next in graph.get(&module).into_iter().flat_map(|m| m.keys()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
}
