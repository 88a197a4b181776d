//! The module graph stays drawn: every top-level module of `src/` may import
//! only the layers below it (docs/architecture.md, "Layers").
//!
//! ```text
//! model ← spec ← compile ← tls ← {mqtt_client, nats_client} ← {sources, stages, sinks} ← engine ← serve ← cli
//!                                              sinks ← backup ← serve
//!                                              sinks ← forward ← engine
//!                                   engine, sources ← collect ← cli
//!                   engine, sources, stages, sinks ← pipetest ← cli
//! ```
//!
//! The check reads the source text: every `crate::<module>` path outside
//! comments and `#[cfg(test)]` modules counts as an import. `--nocapture`
//! prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::repo;

/// Each layer and what it may import (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("spec", &["model"]),
    ("compile", &["spec", "model"]),
    ("tls", &["compile", "spec", "model"]),
    ("mqtt_client", &["tls", "compile", "spec", "model"]),
    ("nats_client", &["tls", "compile", "spec", "model"]),
    ("sources", &["mqtt_client", "nats_client", "tls", "compile", "spec", "model"]),
    ("stages", &["compile", "spec", "model"]),
    ("sinks", &["mqtt_client", "tls", "compile", "spec", "model"]),
    ("forward", &["sinks", "mqtt_client", "nats_client", "tls", "compile", "spec", "model"]),
    ("engine", &["forward", "sources", "stages", "sinks", "nats_client", "tls", "compile", "spec", "model"]),
    ("backup", &["sinks", "compile", "spec", "model"]),
    ("collect", &["engine", "sources", "nats_client", "tls", "compile", "spec", "model"]),
    ("pipetest", &["engine", "sources", "stages", "sinks", "compile", "spec", "model"]),
    (
        "serve",
        &[
            "backup",
            "engine",
            "forward",
            "sources",
            "stages",
            "sinks",
            "nats_client",
            "tls",
            "compile",
            "spec",
            "model",
        ],
    ),
    (
        "cli",
        &[
            "serve",
            "collect",
            "pipetest",
            "backup",
            "engine",
            "forward",
            "sources",
            "stages",
            "sinks",
            "nats_client",
            "tls",
            "compile",
            "spec",
            "model",
        ],
    ),
];

/// The text of a file without comments and without its test modules.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i64> = None;
    let mut depth = 0i64;
    let mut pending_cfg_test = false;
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let trimmed = code.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        let opens = code.matches('{').count() as i64;
        let closes = code.matches('}').count() as i64;
        if pending_cfg_test && skip_depth.is_none() && !trimmed.is_empty() {
            pending_cfg_test = false;
            if trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ") {
                skip_depth = Some(depth);
            }
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d && (opens > 0 || closes > 0) {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The top-level modules a piece of code names through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::x, b};`: the names at the group's first level.
            let end = group.find("};").unwrap_or(group.len());
            let mut level = 0;
            let mut name = String::new();
            let mut at_start = true;
            for c in group[..end].chars() {
                match c {
                    '{' => level += 1,
                    '}' => level -= 1,
                    ',' if level == 0 => at_start = true,
                    c if at_start && level == 0 && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ => {
                        if !name.is_empty() {
                            found.insert(std::mem::take(&mut name));
                        }
                        if !c.is_whitespace() {
                            at_start = false;
                        }
                    }
                }
            }
            if !name.is_empty() {
                found.insert(name);
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.insert(name);
        }
    }
    found
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let src = repo().join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
        let layer = first.trim_end_matches(".rs").to_string();
        if layer == "lib" || layer == "main" {
            continue;
        }
        let Some(ok) = allowed.get(layer.as_str()) else {
            wrong.push(format!("src/{first}: a top-level module with no layer; add it to ALLOWED in tests/it/layers.rs and to docs/architecture.md"));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for m in imports(&code_of(&text)) {
            if m == layer || m.is_empty() {
                continue;
            }
            graph.entry(layer.clone()).or_default().insert(m.clone());
            if !ok.contains(&m.as_str()) {
                wrong.push(format!(
                    "src/{}: `{layer}` imports `crate::{m}`, a layer above it or beside it",
                    rel.display()
                ));
            }
        }
    }
    #[allow(clippy::print_stdout)] // the graph, for `--nocapture`
    for (layer, _) in ALLOWED {
        let deps = graph.get(*layer).map(|s| s.iter().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default();
        println!("{layer:8} → {deps}");
    }
    assert!(wrong.is_empty(), "upward imports:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_plain_paths_and_skips_tests_and_comments() {
    let code = code_of(
        "use crate::model::record::Record;\nuse crate::{spec::X, compile};\n// crate::cli in a comment\n\
         #[cfg(test)]\nmod tests {\n    use crate::engine::Stage;\n}\nfn f() { crate::sinks::x(); }\n",
    );
    let found: Vec<String> = imports(&code).into_iter().collect();
    assert_eq!(found, ["compile", "model", "sinks", "spec"]);
}
