//! Generated files (schema, completions, man pages) must match the code.
//! `EDGEGUARD_BLESS=1 cargo test generated` rewrites them.

use crate::support::repo;

#[test]
fn generated_files_are_fresh() {
    let bless = std::env::var_os("EDGEGUARD_BLESS").is_some();
    let mut stale = Vec::new();
    for (rel, contents) in edgeguard::cli::generated_files() {
        let path = repo().join(&rel);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &contents).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&contents[..]) {
            stale.push(rel);
        }
    }
    assert!(stale.is_empty(), "stale generated files (run `EDGEGUARD_BLESS=1 cargo test generated`): {stale:?}");
}

#[test]
fn the_schema_describes_fields_and_pipelines_point_at_it() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("schemas/pipeline.schema.json")).unwrap()).unwrap();
    let text = schema.to_string();
    assert!(text.contains("Largest plausible change per time"), "field docs become descriptions");
    let demo = std::fs::read_to_string(repo().join("pipelines/demo.yaml")).unwrap();
    assert!(demo.starts_with("# yaml-language-server: $schema=../schemas/pipeline.schema.json"));
}

#[test]
fn the_test_file_schema_describes_tests_and_shipped_tests_point_at_it() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("schemas/pipeline-test.schema.json")).unwrap())
            .unwrap();
    assert_eq!(schema["title"], "edgeguard pipeline tests");
    let text = schema.to_string();
    assert!(text.contains("in the series notation"), "field docs become descriptions");
    assert!(text.contains("\"voted_out\"") && text.contains("\"message_json\""));
    for f in ["pipelines/demo.test.yaml", "pipelines/faults.test.yaml"] {
        let t = std::fs::read_to_string(repo().join(f)).unwrap();
        assert!(t.starts_with("# yaml-language-server: $schema=../schemas/pipeline-test.schema.json"), "{f}");
    }
}

#[test]
fn completions_are_printed_by_the_binary() {
    let out = crate::support::eg(["completions", "bash"]).run();
    out.code(0);
    let committed = std::fs::read_to_string(repo().join("completions/edgeguard.bash")).unwrap();
    assert_eq!(out.stdout, committed);
}
