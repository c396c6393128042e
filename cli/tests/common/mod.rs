//! What the CLI tests share: the built binary run without this shell's settings, temp dirs, the
//! benchmark's generated products file.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "../../../tests/support/catalogue.rs"]
pub mod catalogue;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The binary with none of this shell's chute or AWS settings, schemas from the repository.
pub fn command() -> Command {
    isolated(Command::new(env!("CARGO_BIN_EXE_chute")))
}

/// `command` (the binary, or a program that runs it) without this shell's chute or AWS settings.
pub fn isolated(mut command: Command) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("CHUTE_") || k.starts_with("AWS_") {
            command.env_remove(k);
        }
    }
    command.env("CHUTE_SCHEMA_DIR", root().join("schemas"));
    command
}

pub fn chute(args: &[&str]) -> Output {
    command().args(args).output().unwrap()
}

/// The arguments of `chute --json check FILE OPTION VALUE`.
pub fn check_args<'a>(file: &'a Path, option: &'a str, value: &'a Path) -> [&'a str; 5] {
    let path = |p: &'a Path| p.to_str().unwrap();
    ["--json", "check", path(file), option, path(value)]
}

/// Runs `command` and asserts it exits 0 (its stderr is the failure message).
pub fn run_ok(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chute-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The flags of a European Excel export: windows-1252, decimal commas, `.` thousands.
pub const EUROPEAN: [&str; 6] = [
    "--encoding",
    "windows-1252",
    "--decimal",
    ",",
    "--thousands",
    ".",
];

/// `bytes` written as `name` in a fresh temporary directory for `tag`.
pub fn file_with(tag: &str, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let file = temp(tag).join(name);
    std::fs::write(&file, bytes).unwrap();
    file
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `text` as UTF-16LE with its byte order mark, as Excel's "Unicode text" saves it.
pub fn utf16le(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    bytes
}

/// `text` in ISO-8859-1 (every character used is below U+0100, so one byte each).
pub fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap())
        .collect()
}
