//! What the CLI tests share: the built binary run without this shell's settings, temp dirs, a
//! generated products file like the benchmark's.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The binary with none of this shell's chute or AWS settings, schemas from the repository.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chute"));
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

pub fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chute-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

/// A products CSV as benches/pipeline.rs generates it (1 row in 100 with a price of 3 decimals).
pub fn generate(rows: usize) -> Vec<u8> {
    const CATEGORIES: [&str; 6] = ["Home", "Office", "Kitchen", "Garden", "Toys", "Outdoor"];
    let mut out = Vec::with_capacity(rows * 140);
    out.extend_from_slice(
        b"sku,name,description,price,currency,stock,category,brand,color,tags,created_at,active\n",
    );
    for i in 0..rows {
        let description = if i % 7 == 0 {
            format!("\"Model {i}, boxed\"")
        } else {
            format!("Model {i}")
        };
        let price = if i % 100 == 42 {
            "12.345".to_string()
        } else {
            format!("{}.{:02}", i % 1000, i % 100)
        };
        let line = format!(
            "SKU-{i:09},Product number {i},{description},{price},{},{},{},Brand{},{},tag{}|tag{}|sale,2026-{:02}-{:02},{}\n",
            if i % 3 == 0 { "eur" } else { "USD" },
            i % 5000,
            CATEGORIES[i % CATEGORIES.len()],
            i % 50,
            ["Red", "Blue", "Black"][i % 3],
            i % 10,
            i % 7,
            1 + i % 12,
            1 + i % 28,
            if i % 2 == 0 { "yes" } else { "false" },
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}
