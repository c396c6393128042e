//! The row path on arbitrary bytes: plan (header, chunks, duplicates), transform every chunk.
//! It must never panic, and the accounting must hold for every file it accepts.
#![no_main]

use chute::pipeline::process;
use chute::plan::PlanOptions;
use chute::schema::Schema;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The products schema, and Shopify's (continuation rows, GTINs, identifiers).
static SCHEMAS: OnceLock<[Schema; 2]> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&size, bytes)) = data.split_first() else { return };
    let schemas = SCHEMAS.get_or_init(|| [Schema::products(), Schema::built_in("shopify").expect("shipped")]);
    let schema = &schemas[usize::from(size & 1)];
    // The first byte picks the schema and a chunk size, so chunk boundaries land everywhere.
    let options = PlanOptions { chunk_bytes: u64::from(size) + 1, max_record_bytes: 4096, ..PlanOptions::default() };
    if let Ok(out) = process(bytes, schema, &options) {
        assert_eq!(out.plan.rows, out.valid() + out.rejected() + out.duplicate() + out.skipped());
        let chunk_rows: u64 = out.plan.chunks.iter().map(|c| c.rows).sum();
        assert_eq!(chunk_rows, out.plan.rows);
    }
});
