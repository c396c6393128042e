//! chute's throughput against the physical limits, in one run on one generated file.
//! Run through `scripts/bench` (which adds the Python peer, the chart and the scaling plan):
//!   cargo bench --bench pipeline -- --rows N --csv FILE --json OUT [--skip-db] [--mongodb-uri URI]
//! `--only raw|planner|transform` runs one phase and `--input FILE` reads the CSV instead of
//! generating it (both for `scripts/profile`); without the `adapters`
//! feature the import phase is left out, so profiling builds only the pure engine.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Instant;

use chute::plan::{plan, PlanOptions};
use chute::schema::Schema;
use chute::transform::{transform_chunk, transform_chunk_parts, RowRules, STAGING_PART_BYTES};
use serde_json::{json, Map, Value};

#[path = "../tests/support/catalogue.rs"]
mod catalogue;
use catalogue::generate;

fn rate(rows: u64, start: Instant) -> f64 {
    rows as f64 / start.elapsed().as_secs_f64()
}

/// CPU time this thread has run, in seconds (the scheduler's own count, in nanoseconds): the
/// per-core figure `chute check`'s process CPU time is compared with, unaffected by waiting for a
/// core on a shared machine.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e9)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs in a child process so its peak RSS is its own: plan a file from disk (streaming), or
/// transform its first chunk as the transform Lambda does (parts handed to an uploader thread,
/// here writing them to `PATH.staged`; the import probe reads that file).
fn probe(kind: &str, path: &str, chunk_bytes: u64) {
    let schema = Schema::products();
    let options = PlanOptions {
        chunk_bytes,
        ..PlanOptions::default()
    };
    let format = schema.format.as_declared();
    let planned = plan(
        std::fs::File::open(path).unwrap(),
        &schema,
        format,
        &options,
    )
    .unwrap();
    if kind == "transform" {
        let chunk = planned.chunks[0];
        let mut file = std::fs::File::open(path).unwrap();
        file.seek(SeekFrom::Start(chunk.start)).unwrap();
        let mut bytes = vec![0; (chunk.end - chunk.start) as usize];
        file.read_exact(&mut bytes).unwrap();
        let rules = RowRules::new(&schema, &planned.header, format);
        let (parts, received) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
        let mut staged = std::fs::File::create(format!("{path}.staged")).unwrap();
        let uploader = std::thread::spawn(move || {
            received
                .iter()
                .map(|part| staged.write_all(&part).map(|_| part.len()).unwrap())
                .sum::<usize>()
        });
        let outcome =
            transform_chunk_parts(&rules, &chunk, &bytes, &[], STAGING_PART_BYTES, |part| {
                parts.send(part).unwrap()
            });
        drop(parts);
        let staged_bytes = uploader.join().unwrap();
        assert_eq!(outcome.rows, chunk.rows);
        println!(
            "{}",
            json!({"rss_mb": peak_rss_mb(), "chunk_bytes": chunk.end - chunk.start, "rows": chunk.rows,
                   "staged_mb": staged_bytes as f64 / 1e6})
        );
    } else {
        println!("{}", json!({"rss_mb": peak_rss_mb(), "keys": planned.rows}));
    }
}

fn probe_child(kind: &str, path: &str, chunk_bytes: u64, extra: &[&str]) -> Value {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--probe", kind, path, &chunk_bytes.to_string()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The import Lambda's path over the transform probe's staged file (`PATH.staged`): read as a
/// stream, batch by batch, and upserted. Only its first `docs` documents are written (the whole
/// chunk would take the local server minutes); memory holds one batch whatever the count.
#[cfg(feature = "adapters")]
fn import_probe(path: &str, uri: &str, docs: u64) {
    use chute::feed::Mode;
    use chute::store::{Store, StoreConfig, WriteContext};
    use tokio::io::AsyncReadExt;
    let staged_path = format!("{path}.staged");
    let mut staged = std::io::BufReader::new(std::fs::File::open(&staged_path).unwrap());
    let (mut prefix_bytes, mut count, mut prefix) = (0u64, 0u64, [0u8; 4]);
    while count < docs && staged.read_exact(&mut prefix).is_ok() {
        let len = i32::from_le_bytes(prefix);
        staged.seek_relative(i64::from(len) - 4).unwrap();
        prefix_bytes += len as u64;
        count += 1;
    }
    let schema = Schema::products();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::connect(&StoreConfig::new(uri, "chute_bench_import"))
            .await
            .unwrap();
        store.database().drop().await.unwrap();
        store.ensure_collection(&schema).await.unwrap();
        let reader = tokio::fs::File::open(&staged_path)
            .await
            .unwrap()
            .take(prefix_bytes);
        let ctx = WriteContext {
            run_id: "bench-rss".into(),
            object: "s3://bench/bench.csv".into(),
            feed_source: "default".into(),
            mode: Mode::Incremental,
            at: bson::DateTime::now(),
            reapply: false,
        };
        let outcome = store.upsert_stream(&schema, reader, &ctx).await.unwrap();
        assert_eq!(outcome.counts.inserted, count);
        store.database().drop().await.unwrap();
    });
    println!("{}", json!({"rss_mb": peak_rss_mb(), "docs": count}));
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--probe") {
        #[cfg(feature = "adapters")]
        if args[i + 1] == "import" {
            import_probe(&args[i + 2], &args[i + 4], args[i + 5].parse().unwrap());
            return;
        }
        probe(&args[i + 1], &args[i + 2], args[i + 3].parse().unwrap());
        return;
    }
    let rows: usize = arg(&args, "--rows").map_or(1_000_000, |r| r.parse().expect("--rows N"));
    let csv_path = arg(&args, "--csv").expect("--csv FILE (the generated file is written there)");
    let only = arg(&args, "--only");
    let runs = |phase: &str| only.as_deref().is_none_or(|o| o == phase);
    let schema = Schema::products();
    let mut results = Map::new();

    let t = Instant::now();
    // `--input FILE` measures a file generated earlier (so a profile holds no generator samples).
    let data = match arg(&args, "--input") {
        Some(path) => std::fs::read(path).expect("--input FILE is readable"),
        None => generate(rows),
    };
    std::fs::write(&csv_path, &data).unwrap();
    eprintln!(
        "generated {rows} rows ({:.1} MB) in {:.1}s",
        data.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    results.insert("rows".into(), json!(rows));
    results.insert("file_mb".into(), json!(data.len() as f64 / 1e6));

    // Each rate is the best of ROUNDS passes (a shared 2-core machine has noisy neighbours), and
    // the phases alternate so a slow spell cannot hit only one of them.
    const ROUNDS: usize = 5;
    let options = PlanOptions::default();
    let format = schema.format.as_declared();
    let planned = plan(data.as_slice(), &schema, format, &options).unwrap();
    results.insert("chunks".into(), json!(planned.chunks.len()));
    let rules = RowRules::new(&schema, &planned.header, format);
    let mut staged = Vec::new();
    let (mut valid, mut rejected) = (0u64, 0u64);
    let (mut raw, mut planner, mut transform, mut transform_cpu) = (0f64, 0f64, 0f64, 0f64);
    for _ in 0..ROUNDS {
        // 1. The physical limit: the csv crate's ByteRecord loop.
        if runs("raw") {
            raw = raw.max(raw_parse(&data));
        }
        // 2. Planner: chunk boundaries, line numbers and key fingerprints in one pass.
        if runs("planner") {
            let t = Instant::now();
            plan(data.as_slice(), &schema, format, &options).unwrap();
            planner = planner.max(rate(planned.rows, t));
        }
        // 3. Transform: parse + validate + BSON, chunk by chunk as the Lambdas do.
        if runs("transform") {
            let (t, cpu) = (Instant::now(), thread_cpu_s());
            (valid, rejected) = (0, 0);
            for chunk in &planned.chunks {
                staged.clear();
                let outcome = transform_chunk(
                    &rules,
                    chunk,
                    &data[chunk.start as usize..chunk.end as usize],
                    &[],
                    &mut staged,
                );
                valid += outcome.valid;
                rejected += outcome.rejected.len() as u64;
            }
            transform = transform.max(rate(planned.rows, t));
            transform_cpu = transform_cpu.max(planned.rows as f64 / (thread_cpu_s() - cpu));
        }
    }
    for (key, value) in [
        ("raw_parse_rows_per_s", raw),
        ("planner_rows_per_s", planner),
        ("transform_rows_per_s", transform),
        ("transform_cpu_rows_per_s", transform_cpu),
    ] {
        if value > 0.0 {
            results.insert(key.into(), json!(value));
        }
    }
    results.insert("transform_valid".into(), json!(valid));
    results.insert("transform_rejected".into(), json!(rejected));
    if runs("formats") {
        results.extend(format_rates(&data, &schema, ROUNDS));
    }
    if only.is_some() {
        println!("{}", Value::Object(results));
        return;
    }
    results.insert("planner_ratio".into(), json!(planner / raw));
    results.insert("transform_ratio".into(), json!(transform / raw));

    // 5. Memory: transform of one 64 MiB chunk, and the planner per million distinct keys.
    let chunk_probe = probe_child("transform", &csv_path, 64 * 1024 * 1024, &[]);
    results.insert(
        "transform_peak_rss_mb".into(),
        chunk_probe["rss_mb"].clone(),
    );
    // What the transform uploads and the import reads back, batch by batch.
    results.insert(
        "staged_mb_per_chunk".into(),
        chunk_probe["staged_mb"].clone(),
    );
    results.insert(
        "transform_probe_chunk_mb".into(),
        json!(chunk_probe["chunk_bytes"].as_f64().unwrap_or(0.0) / 1e6),
    );
    let plan_probe = probe_child("plan", &csv_path, 64 * 1024 * 1024, &[]);
    let per_million = plan_probe["rss_mb"].as_f64().unwrap_or(0.0) / (rows as f64 / 1e6);
    results.insert("planner_peak_rss_mb".into(), plan_probe["rss_mb"].clone());
    results.insert("planner_rss_mb_per_million_keys".into(), json!(per_million));

    // 4. Import against a real server: our path vs a raw insert_many of the same documents.
    #[cfg(feature = "adapters")]
    if !args.iter().any(|a| a == "--skip-db") {
        let uri = arg(&args, "--mongodb-uri").expect("--mongodb-uri URI (or --skip-db)");
        let docs: usize = arg(&args, "--db-docs").map_or(10_000, |n| n.parse().unwrap());
        let (ours, raw_insert, bare_insert) = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(import_rates(&uri, &schema, &data, docs));
        results.insert("import_docs_per_s".into(), json!(ours));
        results.insert("raw_insert_docs_per_s".into(), json!(raw_insert));
        results.insert("raw_insert_bare_docs_per_s".into(), json!(bare_insert));
        results.insert("import_ratio".into(), json!(ours / raw_insert));
        results.insert("db_docs".into(), json!(docs));
        let docs = docs.to_string();
        let import_probe = probe_child("import", &csv_path, 64 * 1024 * 1024, &[&uri, &docs]);
        results.insert("import_peak_rss_mb".into(), import_probe["rss_mb"].clone());
    }

    let json = Value::Object(results);
    if let Some(path) = arg(&args, "--json") {
        std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
    println!("{json}");
}

/// Measure 6, files other than plain UTF-8 (issue 17): the engine's rate over the same rows stored as
/// windows-1252 and as gzip, decoding included (what the validate step does once before planning),
/// as a ratio to the same rows in plain UTF-8. The rows carry accents (`Produit numéro`) so the
/// windows-1252 file is not plain ASCII.
fn format_rates(data: &[u8], schema: &Schema, rounds: usize) -> Map<String, Value> {
    use chute::format::Format;
    use chute::input::decode_all;
    let plain = std::str::from_utf8(data)
        .unwrap()
        .replace("Product number", "Produit numéro");
    let latin = encoding_rs::WINDOWS_1252.encode(&plain).0.into_owned();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(plain.as_bytes()).unwrap();
    let gzip = gzip.finish().unwrap();
    let declared = Format {
        encoding: encoding_rs::WINDOWS_1252,
        ..schema.format.clone()
    };
    let inputs = [
        ("plain", plain.as_bytes(), &schema.format),
        ("windows1252", latin.as_slice(), &declared),
        ("gzip", gzip.as_slice(), &schema.format),
    ];
    let mut best = [0f64; 3];
    for _ in 0..rounds {
        for (i, (_, bytes, format)) in inputs.iter().enumerate() {
            let t = Instant::now();
            let decoded = decode_all(bytes, Some(schema), format, None).unwrap();
            let options = PlanOptions::default();
            let outcome = chute::pipeline::process_with_progress(
                &decoded.csv,
                schema,
                decoded.format,
                &options,
                false,
                |_| {},
            )
            .unwrap();
            best[i] = best[i].max(rate(outcome.plan.rows, t));
        }
    }
    let mut results = Map::new();
    for ((name, _, _), rate) in inputs.iter().zip(best) {
        results.insert(format!("input_{name}_rows_per_s"), json!(rate));
    }
    results.insert("input_windows1252_ratio".into(), json!(best[1] / best[0]));
    results.insert("input_gzip_ratio".into(), json!(best[2] / best[0]));
    results
}

fn raw_parse(data: &[u8]) -> f64 {
    let t = Instant::now();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(data);
    let mut record = csv::ByteRecord::new();
    let mut count = 0u64;
    while reader.read_byte_record(&mut record).unwrap() {
        count += 1;
    }
    rate(count, t)
}

#[cfg(feature = "adapters")]
async fn import_rates(uri: &str, schema: &Schema, data: &[u8], docs: usize) -> (f64, f64, f64) {
    use chute::feed::Mode;
    use chute::store::{split_staged, Store, StoreConfig, WriteContext};
    // The first `docs` valid rows, staged exactly as the transform stages them.
    let cut = data
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(docs + docs / 50 + 1)
        .map_or(data.len(), |(i, _)| i + 1);
    let out = chute::pipeline::process(&data[..cut], schema, &PlanOptions::default()).unwrap();
    let staged_docs = split_staged(&out.staged).unwrap();
    let staged_docs = &staged_docs[..docs.min(staged_docs.len())];
    let staged: Vec<u8> = staged_docs
        .iter()
        .flat_map(|d| d.as_bytes().to_vec())
        .collect();

    let plain: Vec<bson::Document> = staged_docs
        .iter()
        .map(|d| bson::Document::try_from(*d).unwrap())
        .collect();
    let store = Store::connect(&StoreConfig::new(uri, "chute_bench"))
        .await
        .unwrap();
    let ctx = WriteContext {
        run_id: "bench".into(),
        object: "s3://bench/bench.csv".into(),
        feed_source: "default".into(),
        mode: Mode::Incremental,
        at: bson::DateTime::now(),
        reapply: false,
    };
    // Like the engine rates: the best of alternating rounds, each into freshly created collections,
    // so neither path is measured alone in a slow spell or always first.
    const DB_ROUNDS: usize = 3;
    let (mut ours, mut same, mut bare) = (0f64, 0f64, 0f64);
    for _ in 0..DB_ROUNDS {
        store.database().drop().await.unwrap();
        store.ensure_collection(schema).await.unwrap();
        let t = Instant::now();
        let outcome = store.upsert_staged(schema, &staged, &ctx).await.unwrap();
        ours = ours.max(rate(outcome.counts.inserted, t));
        assert_eq!(outcome.counts.inserted as usize, staged_docs.len());

        // The baseline: the same documents through insert_many into a collection set up as ours
        // is (validator, unique key and secondary indexes), and into a bare one.
        for (collection, set_up) in [("raw_insert", true), ("raw_insert_bare", false)] {
            if set_up {
                let mut same_schema = schema.clone();
                same_schema.collection = collection.to_string();
                store.ensure_collection(&same_schema).await.unwrap();
            }
            let raw = store.database().collection::<bson::Document>(collection);
            let t = Instant::now();
            for batch in plain.chunks(1000) {
                raw.insert_many(batch).ordered(false).await.unwrap();
            }
            let best = if set_up { &mut same } else { &mut bare };
            *best = best.max(rate(plain.len() as u64, t));
        }
    }
    store.database().drop().await.unwrap();
    (ours, same, bare)
}
