//! Files generated from the code: the JSON Schemas of the spec and of its
//! test files, shell completions and man pages. A test compares them with
//! the committed copies and fails when they are stale;
//! `EDGEGUARD_BLESS=1 cargo test generated` rewrites them.

use clap_complete::Shell;

/// (path relative to the repository, contents) of every generated file.
pub fn generated_files() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let schema = schemars::schema_for!(crate::spec::Spec);
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serializes");
    text.push('\n');
    out.push(("schemas/pipeline.schema.json".to_string(), text.into_bytes()));
    let tests = schemars::schema_for!(crate::spec::pipetest::TestFileSpec);
    let mut text = serde_json::to_string_pretty(&tests).expect("schema serializes");
    text.push('\n');
    out.push(("schemas/pipeline-test.schema.json".to_string(), text.into_bytes()));

    for (shell, name) in [
        (Shell::Bash, "edgeguard.bash"),
        (Shell::Zsh, "_edgeguard"),
        (Shell::Fish, "edgeguard.fish"),
        (Shell::Elvish, "edgeguard.elv"),
        (Shell::PowerShell, "_edgeguard.ps1"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut super::command(), "edgeguard", &mut buf);
        out.push((format!("completions/{name}"), buf));
    }

    let cmd = super::command();
    out.push(("man/edgeguard.1".to_string(), man(cmd.clone())));
    for sub in cmd.get_subcommands() {
        // clap names are `&'static str` (without its `string` feature); the
        // generator runs once per process, so leaking these few bytes is fine.
        let name: &'static str = Box::leak(format!("edgeguard-{}", sub.get_name()).into_boxed_str());
        let sub = sub.clone().name(name).display_name(name);
        out.push((format!("man/{name}.1"), man(sub)));
    }
    out
}

fn man(cmd: clap::Command) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf).expect("man page renders");
    buf
}
