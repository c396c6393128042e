//! Property: reading a file chunk by chunk yields exactly the records, row numbers and line numbers
//! of the file as written, whatever the chunk size.

use chute::plan::{plan, PlanOptions};
use chute::records::ChunkRecords;
use chute::schema::Schema;
use proptest::prelude::*;

/// A field drawn from pieces that stress a CSV reader: quotes, delimiters, both newline kinds.
fn field() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("a"),
            Just("Zz9"),
            Just(" "),
            Just(","),
            Just("\""),
            Just("\n"),
            Just("\r\n"),
            Just("é"),
            Just("")
        ],
        0..5,
    )
    .prop_map(|parts| parts.concat())
}

fn encode(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) || field.is_empty() {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[derive(Debug, Clone)]
struct File {
    text: String,
    /// Each record's fields and the line its content starts on.
    expected: Vec<(Vec<String>, u64)>,
}

fn file() -> impl Strategy<Value = File> {
    let record = (prop::collection::vec(field(), 2..7), 0usize..3);
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(record, 0..40),
        any::<bool>(),
    )
        .prop_map(|(bom, crlf, records, final_newline)| {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut text = String::new();
            if bom {
                text.push('\u{feff}');
            }
            text.push_str("sku,name,price,stock,category");
            let mut expected = Vec::new();
            for (i, (fields, blank_lines)) in records.iter().enumerate() {
                text.push_str(eol);
                for _ in 0..*blank_lines {
                    text.push_str(eol);
                }
                let line = 1 + text.matches('\n').count() as u64;
                let encoded: Vec<String> = fields.iter().map(|f| encode(f)).collect();
                text.push_str(&encoded.join(","));
                if i + 1 == records.len() && final_newline {
                    text.push_str(eol);
                }
                expected.push((fields.clone(), line));
            }
            File { text, expected }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn chunked_reading_equals_the_file(file in file(), chunk_bytes in prop_oneof![Just(1u64), 2u64..64, Just(1u64 << 30)]) {
        let schema = Schema::products();
        let bytes = file.text.as_bytes();
        let delimiter = schema.format.as_declared().delimiter;
        let plan = plan(bytes, &schema, schema.format.as_declared(), &PlanOptions { chunk_bytes, ..PlanOptions::default() }).unwrap();
        prop_assert_eq!(plan.rows, file.expected.len() as u64);
        prop_assert_eq!(plan.file_bytes, bytes.len() as u64);
        let mut next_start = plan.data_start;
        let mut got = Vec::new();
        let mut record = csv::StringRecord::new();
        for chunk in &plan.chunks {
            prop_assert_eq!(chunk.start, next_start, "chunks tile the data");
            prop_assert_eq!(chunk.first_row, got.len() as u64 + 1);
            next_start = chunk.end;
            let mut records = ChunkRecords::new(delimiter, chunk, &bytes[chunk.start as usize..chunk.end as usize]);
            let mut in_chunk = 0;
            while let Some(located) = records.next(&mut record) {
                prop_assert_eq!(located.position.row, got.len() as u64 + 1);
                let fields: Vec<String> = located.fields.bytes().iter().map(|f| String::from_utf8(f.to_vec()).unwrap()).collect();
                got.push((fields, located.position.line));
                in_chunk += 1;
            }
            prop_assert_eq!(in_chunk, chunk.rows);
            if chunk_bytes == 1 {
                prop_assert_eq!(chunk.rows, 1, "one record per chunk at the smallest size");
            }
        }
        if !plan.chunks.is_empty() {
            prop_assert_eq!(next_start, bytes.len() as u64);
        }
        prop_assert_eq!(got, file.expected);
    }
}
