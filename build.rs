//! Compiles every `schemas/*.toml` into the library (`Schema::built_in`): a Lambda ships only its
//! `bootstrap`, so a schema read from a relative directory at run time would not be there.

use std::fmt::Write;
use std::path::Path;

fn main() {
    // A directory makes cargo rerun this script when a file in it is added, removed or changed.
    println!("cargo:rerun-if-changed=schemas");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("schemas");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable schemas/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| {
            path.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_else(|| panic!("{} is not a UTF-8 name", path.display()))
                .to_string()
        })
        .collect();
    names.sort();
    let mut out =
        String::from("/// Every `schemas/NAME.toml` as `(NAME, text)`, sorted by name.\n");
    out.push_str("pub const BUILT_IN: &[(&str, &str)] = &[\n");
    // Paths relative to the manifest, resolved when the crate compiles: a target dir shared by
    // two checkouts must not keep including the other checkout's files.
    for name in &names {
        writeln!(
            out,
            "    ({name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/schemas/{name}.toml\"))),"
        )
        .expect("writing to a String");
    }
    out.push_str("];\n");
    let generated =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("schemas.rs");
    std::fs::write(&generated, out)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", generated.display()));
}
