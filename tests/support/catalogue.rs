//! A generated products CSV like a real catalogue export, for the benchmark (benches/pipeline.rs)
//! and the tests that want volume (cli/tests): one generator, included by path, so a figure and a
//! test talk about the same file.

const CATEGORIES: [&str; 6] = ["Home", "Office", "Kitchen", "Garden", "Toys", "Outdoor"];

/// A products CSV like a real catalogue export: 1 row in 100 invalid, a quoted description with a
/// comma in every 7th row, tags, dates, attributes.
pub fn generate(rows: usize) -> Vec<u8> {
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
