//! `cargo install --path cli` really installs a working `chute`: into a temporary root, built in
//! this test's own target directory (so only the binary is linked again, nothing recompiled), then
//! the installed binary's `--help` and a check of a held-in sample.

mod common;

use std::path::Path;
use std::process::Command;

use common::{isolated, json, root, run_ok, temp};

#[test]
fn cargo_install_path_cli_installs_a_chute_that_checks_a_sample() {
    let install_root = temp("install");
    // target/debug/chute: the target directory this test was built in.
    let target = Path::new(env!("CARGO_BIN_EXE_chute"))
        .ancestors()
        .nth(2)
        .unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_ok(
        Command::new(cargo)
            .args(["install", "--path", "cli", "--debug", "--locked", "--root"])
            .arg(&install_root)
            .arg("--target-dir")
            .arg(target)
            .current_dir(root()),
    );
    let installed = install_root.join("bin/chute");

    let help = isolated(Command::new(&installed))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0), "{help:?}");
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("check FILE") && help.contains("EXIT STATUS"),
        "{help}"
    );

    let dirty = root().join("samples/dirty.csv");
    let out = isolated(Command::new(&installed))
        .args(["--json", "check"])
        .arg(&dirty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json(&out);
    assert_eq!(report["status"], "PARTIAL");
    assert_eq!(
        [
            &report["rows"]["total"],
            &report["rows"]["valid"],
            &report["rows"]["rejected"],
            &report["rows"]["duplicate"]
        ],
        [7, 3, 3, 1]
    );
}
