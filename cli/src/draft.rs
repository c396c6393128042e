//! `chute schema draft FILE`: an editable schema TOML inferred from a sample. The sample is read
//! exactly as `chute check` and a run read it ([`chute::input::decode_all`]: compression, UTF-16,
//! declared encodings, .xlsx, the `auto` delimiter), and a type is chosen only when every value of
//! the sample passes the library's own parser for it (`rules::parse_cell`, with the file's number
//! format), so `chute check` with the draft accepts the file it was drafted from.

use std::path::PathBuf;
use std::process::ExitCode;

use chute::format::{delimiter_name, Delimiter, Format};
use chute::input::{decode_all, Decoded, ReadAs};
use chute::records::csv_reader;
use chute::rules::{parse_cell, parse_gtin, ColumnType, Constraints};
use chute::schema::{fold_header, is_name_char, Schema};
use chute::value::{trim, CellValue};
use serde::Serialize;

use crate::reading::ReadFlags;

mod identifiers;
mod sniff;

use crate::{Failure, Outcome};
use identifiers::{gtin_notes, identifier_note, names_a_barcode};

pub const LONG_ABOUT: &str = "\
Read a sample of a CSV (the first --rows rows, 100,000 by default) and print a schema TOML for it \
that a person can edit and then drop into CHUTE_SCHEMA_DIR.

The sample is read as `chute check` and a run read it: gzip, zstd and zip by their magic bytes, \
UTF-16 by its BOM, an .xlsx from its first sheet (or --sheet); the delimiter is the one of `,` `;` \
tab `|` that splits the header into the most columns unless --delimiter says. --encoding, \
--decimal and --thousands declare what the object metadata would, and the draft's [format] \
records them.

Types are inferred conservatively, with the library's own cell parsers: a column becomes integer, \
decimal, boolean or timestamp only when every non-empty value in the sample parses as one. \
Without --decimal/--thousands, number columns that read only with a decimal comma (`9,95`) or \
thousands separators (`1,234.50`) set the draft's [format], with a comment; `1,234` alone is \
ambiguous and decides nothing. A column whose values mostly hold one of `|`, `;`, `, ` between \
short items is a list with that separator. A \
zero-padded column (`007`) or a mixed one stays a string, and a comment says why. A column named \
like a barcode (gtin, ean, upc, barcode) or whose values are all GTINs with their GS1 check digit \
is `gtin`; values Excel put in scientific notation are counted in a comment (`chute check` then \
rejects them). Other string columns named like identifiers (sku, mpn, id, code, part number) or \
holding zero-padded digits get `identifier = true`. A column is \
`required` when no value in the sample is empty. The key is --key COLUMN, else a guess: the first \
column whose values are all present and distinct, marked as a guess. Aliases are left as comments \
to fill in.

EXAMPLES
    chute schema draft feed.csv > schemas/feed.toml
    chute schema draft stock.csv --key sku --rows 5000
    chute check feed.csv --schema-file schemas/feed.toml";

#[derive(clap::Args)]
pub struct Args {
    /// The sample CSV.
    pub file: PathBuf,
    /// The key column (default: a guess, marked as such).
    #[arg(long, value_name = "COLUMN")]
    pub key: Option<String>,
    /// Rows read from the sample.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub rows: usize,
    #[command(flatten)]
    pub read: ReadFlags,
}

/// What was inferred for one column.
#[derive(Debug, Serialize)]
pub struct Drafted {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub required: bool,
    /// A decimal column's most decimal places in the sample, drafted as its `scale`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    /// A list column's separator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub separator: Option<&'static str>,
    /// Drafted `identifier = true`: a string column of codes, checked for spreadsheet damage.
    pub identifier: bool,
    /// Why a column that looked numeric (or anything else) stays a string, or other notes.
    pub notes: Vec<String>,
    /// Non-empty values seen, and distinct ones among them.
    pub present: usize,
    pub distinct: usize,
}

#[derive(Debug, Serialize)]
pub struct Draft {
    pub name: String,
    /// How the sample was read, as a run's report says it.
    pub read_as: ReadAs,
    pub delimiter: char,
    pub key: String,
    pub key_guessed: bool,
    pub key_note: String,
    pub rows_sampled: usize,
    pub columns: Vec<Drafted>,
    pub toml: String,
}

const CANDIDATES: [(ColumnType, &str); 4] = [
    (ColumnType::Integer, "integer"),
    (ColumnType::Decimal, "decimal"),
    (ColumnType::Boolean, "boolean"),
    (ColumnType::Timestamp, "timestamp"),
];

fn is_zero_padded(value: &str) -> bool {
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value).as_bytes();
    digits.len() > 1 && digits[0] == b'0' && digits[1].is_ascii_digit()
}

/// A name that is a usable schema (and collection) name: letters, digits, `_` and `-`.
fn schema_name(file: &std::path::Path) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    if name.is_empty() {
        "draft".into()
    } else {
        name
    }
}

/// A TOML basic string (JSON's escapes are TOML's).
fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("serialisable")
}

/// Infers a draft from the first `rows` rows of a decoded sample; `declared` is the format it was
/// read with (what the draft's `[format]` records).
pub fn draft(
    decoded: &Decoded,
    declared: &Format,
    name: &str,
    key: Option<&str>,
    rows: usize,
) -> Result<Draft, Failure> {
    let bytes = decoded.csv.as_ref();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let delimiter = decoded.format.delimiter;
    let mut reader = csv_reader(delimiter, bytes);
    let mut first = csv::StringRecord::new();
    if !reader
        .read_record(&mut first)
        .map_err(|e| Failure(format!("cannot read the header: {e}")))?
    {
        return Err(Failure("the file has no header row".into()));
    }
    let header: Vec<String> = first.iter().map(|h| trim(h).to_string()).collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(Failure("the file has no header row".into()));
    }
    // Per column: values seen (trimmed, non-empty), empties.
    let mut values: Vec<Vec<String>> = vec![Vec::new(); header.len()];
    let mut empty = vec![0usize; header.len()];
    let mut sampled = 0;
    let mut skipped = 0;
    for record in reader.records().take(rows) {
        let Ok(record) = record else {
            skipped += 1;
            continue;
        };
        // A row with the wrong field count is rejected whatever the schema says: it tells nothing.
        if record.len() != header.len() {
            skipped += 1;
            continue;
        }
        sampled += 1;
        for (i, cell) in record.iter().enumerate() {
            let cell = trim(cell);
            if cell.is_empty() {
                empty[i] += 1;
            } else {
                values[i].push(cell.to_string());
            }
        }
    }
    // No --decimal/--thousands: the number format the values need, if they agree on one.
    let mut numbers = decoded.format.numbers;
    let mut number_note = None;
    if declared.numbers.is_plain() {
        let named: Vec<(&str, &[String])> = header
            .iter()
            .map(String::as_str)
            .zip(values.iter().map(Vec::as_slice))
            .collect();
        if let Some((found, why)) = sniff::number_format(&named) {
            numbers = found;
            number_note = Some(why);
        }
    }
    let mut seen_names = std::collections::HashSet::new();
    let mut columns = Vec::new();
    // Noted for string columns, applied to those that are not the key (a key is an identifier).
    let mut identifier_notes = std::collections::HashMap::new();
    for (i, column) in header.iter().enumerate() {
        if column.is_empty() || !seen_names.insert(fold_header(column)) {
            continue;
        }
        let vals = &values[i];
        let distinct = vals.iter().collect::<std::collections::HashSet<_>>().len();
        let mut kind = "string";
        let mut scale = None;
        let mut separator = None;
        let mut notes = Vec::new();
        let not_gtin = || {
            vals.iter()
                .find_map(|v| parse_gtin(v).err().map(|e| (v, e)))
        };
        if let Some(gtin) = gtin_notes(column, vals) {
            kind = "gtin";
            notes = gtin;
        } else if let Some((v, e)) = names_a_barcode(column).then(not_gtin).flatten() {
            // Not a number either: a barcode's digits are an identifier's.
            let message = e.message;
            notes.push(format!(
                "stays a string although named like a barcode: `{v}` {message}"
            ));
        } else if !vals.is_empty() {
            let constraints = Constraints {
                separator: "|".into(),
                ..Constraints::default()
            };
            for (candidate, label) in CANDIDATES {
                let failing = vals
                    .iter()
                    .filter(|v| parse_cell(candidate, &constraints, &numbers, v).is_err())
                    .count();
                // Integers with decimals among them (prices `25`, `17.99`) are decimals: the next
                // candidate takes them all.
                if candidate == ColumnType::Integer
                    && failing > 0
                    && vals
                        .iter()
                        .all(|v| parse_cell(ColumnType::Decimal, &constraints, &numbers, v).is_ok())
                {
                    continue;
                }
                // `1`/`0` columns are numbers, not booleans.
                if candidate == ColumnType::Boolean
                    && vals.iter().all(|v| v.bytes().all(|b| b.is_ascii_digit()))
                {
                    continue;
                }
                if failing == 0 {
                    let padded = matches!(candidate, ColumnType::Integer | ColumnType::Decimal)
                        .then(|| vals.iter().find(|v| is_zero_padded(v)))
                        .flatten();
                    match padded {
                        Some(v) => notes.push(format!(
                            "stays a string: values are zero-padded (`{v}`), which a number would drop"
                        )),
                        None => kind = label,
                    }
                    break;
                }
                if failing * 2 < vals.len() {
                    let example = vals
                        .iter()
                        .find(|v| parse_cell(candidate, &constraints, &numbers, v).is_err())
                        .expect("a failing value");
                    notes.push(format!(
                        "stays a string: mixed, {} of {} values are {label} but `{example}` is not",
                        vals.len() - failing,
                        vals.len()
                    ));
                    break;
                }
            }
            if kind == "decimal" {
                let places =
                    |v: &String| match parse_cell(ColumnType::Decimal, &constraints, &numbers, v) {
                        Ok(CellValue::Decimal(d)) => d.scale,
                        _ => 0,
                    };
                scale = vals.iter().map(places).max();
                let whole = vals
                    .iter()
                    .find(|v| parse_cell(ColumnType::Integer, &constraints, &numbers, v).is_ok());
                let fraction = vals.iter().find(|v| places(v) > 0);
                if let (Some(whole), Some(fraction)) = (whole, fraction) {
                    notes.push(format!(
                        "whole numbers and decimals together (`{whole}`, `{fraction}`): decimal"
                    ));
                }
            }
            if let Some((sep, note)) = (kind == "string")
                .then(|| sniff::list_separator(vals, delimiter))
                .flatten()
            {
                kind = "list";
                separator = Some(sep);
                notes.push(note);
            }
        }
        if kind == "string" {
            if let Some(note) = identifier_note(column, vals) {
                identifier_notes.insert(column.clone(), note);
            }
        }
        columns.push(Drafted {
            name: column.clone(),
            kind,
            required: empty[i] == 0 && !vals.is_empty(),
            scale,
            separator,
            identifier: false,
            notes,
            present: vals.len(),
            distinct,
        });
    }
    let (key, key_guessed, key_note) = match key {
        Some(k) => {
            let Some(c) = columns
                .iter()
                .find(|c| fold_header(&c.name) == fold_header(k))
            else {
                return Err(Failure(format!("--key {k}: the header has no such column")));
            };
            let note = if c.distinct < c.present || !c.required {
                format!(
                    "key `{}` (given): {} of {sampled} rows have a value, {} distinct; rows with an empty key are rejected, repeated keys keep the last row",
                    c.name, c.present, c.distinct
                )
            } else {
                format!("key `{}` (given)", c.name)
            };
            (c.name.clone(), false, note)
        }
        None => {
            // Always present first, then a name that says key, then distinct values, then a
            // type keys usually have; the first column wins a tie.
            let hint = |n: &str| {
                let n = n.to_lowercase();
                ["sku", "id", "key", "code", "ean", "gtin", "upc"]
                    .iter()
                    .any(|h| {
                        n == *h || n.ends_with(&format!("_{h}")) || n.starts_with(&format!("{h}_"))
                    })
            };
            let score = |c: &Drafted| {
                (
                    c.required,
                    hint(&c.name),
                    c.distinct == c.present,
                    matches!(c.kind, "string" | "integer")
                        && c.notes.iter().all(|n| !n.contains("mixed")),
                )
            };
            let chosen = columns
                .iter()
                .rev()
                .max_by_key(|c| score(c))
                .filter(|c| c.required);
            let unique = chosen.filter(|c| c.distinct == c.present);
            let Some(c) = chosen else {
                return Err(Failure(
                    "no column has a value in every row, so none can be the key; give one with --key"
                        .into(),
                ));
            };
            let note = if unique.is_some() {
                format!(
                    "key GUESSED: `{}` has a value in every sampled row, all {} distinct; check it",
                    c.name, c.present
                )
            } else {
                format!(
                    "key GUESSED: `{}` has a value in every sampled row but only {} distinct of {}: repeated keys keep the last row; check it",
                    c.name, c.distinct, c.present
                )
            };
            (c.name.clone(), true, note)
        }
    };
    for c in &mut columns {
        if c.name == key {
            c.required = true;
            if c.kind != "string" {
                c.notes.push(format!(
                    "a string although its values are {}: key columns are strings",
                    c.kind
                ));
                c.kind = "string";
                c.scale = None;
                c.separator = None;
            }
        } else if let Some(note) = identifier_notes.remove(&c.name) {
            c.notes.push(note);
            c.identifier = true;
        }
    }
    let mut draft = Draft {
        name: name.to_string(),
        read_as: decoded.read_as.clone(),
        delimiter: delimiter as char,
        key,
        key_guessed,
        key_note,
        rows_sampled: sampled,
        columns,
        toml: String::new(),
    };
    let read_with = Format {
        numbers,
        ..declared.clone()
    };
    let format = format_table(&read_with, delimiter, number_note.as_deref());
    draft.toml = to_toml(&draft, &format, skipped);
    // The draft must load as a schema; a failure here is a bug in this function.
    Schema::from_toml(&draft.toml, "the draft")
        .map_err(|e| Failure(format!("the drafted schema does not load: {e}")))?;
    Ok(draft)
}

/// The draft's `[format]`: the delimiter it was read with, and what the flags declared beyond the
/// defaults or what the values needed (`detected` says why), so `chute check` and a run read the
/// file as the draft did.
fn format_table(declared: &Format, delimiter: u8, detected: Option<&str>) -> String {
    let mut t = format!(
        "[format]\ndelimiter = {}\n",
        quote(&delimiter_name(delimiter))
    );
    if declared.encoding != Format::default().encoding {
        t += &format!("encoding = {}\n", quote(declared.encoding.name()));
    }
    if let Some(why) = detected {
        t += &format!("# detected, no --decimal/--thousands given: {why}\n");
    }
    if declared.numbers.decimal != '.' {
        t += &format!(
            "decimal = {}\n",
            quote(&declared.numbers.decimal.to_string())
        );
    }
    match declared.numbers.thousands {
        Some(' ') => t += "thousands = \"space\"\n",
        Some(c) => t += &format!("thousands = {}\n", quote(&c.to_string())),
        None => {}
    }
    t
}

fn to_toml(d: &Draft, format: &str, skipped: usize) -> String {
    let mut t = String::new();
    t += &format!(
        "# Drafted by `chute schema draft` from {} sample rows{}. Edit before use:\n",
        d.rows_sampled,
        if skipped > 0 {
            format!(" ({skipped} rows with the wrong field count skipped)")
        } else {
            String::new()
        }
    );
    t += "# types were inferred conservatively, `required` means no sampled value was empty.\n";
    t += &format!("# Read as {}.\n\n", d.read_as.line());
    t += &format!("name = {}\n", quote(&d.name));
    t += &format!("collection = {}\n", quote(&d.name));
    t += &format!("# {}\n", d.key_note);
    t += &format!("key = [{}]\n", quote(&d.key));
    t += "\n";
    t += format;
    for c in &d.columns {
        t += "\n[[columns]]\n";
        t += &format!("name = {}\n", quote(&c.name));
        t += "# aliases = []  (other header names of this column, if feeds differ)\n";
        for note in &c.notes {
            t += &format!("# {note}\n");
        }
        t += &format!("type = {}\n", quote(c.kind));
        if let Some(scale) = c.scale {
            t += &format!("scale = {scale}  # the most decimal places in the sample\n");
        }
        if let Some(sep) = c.separator {
            t += &format!("separator = {}\n", quote(sep));
        }
        if c.required {
            t += "required = true\n";
        }
        if c.identifier {
            t += "identifier = true\n";
        }
        let field_ok = !c
            .name
            .split('.')
            .any(|p| p.is_empty() || p.starts_with('$') || p.contains('\0'));
        if !field_ok {
            let field: String = c
                .name
                .chars()
                .map(|ch| {
                    if ch == '.' || ch == '$' || ch == '\0' {
                        '_'
                    } else {
                        ch
                    }
                })
                .collect();
            t += &format!(
                "field = {}\n",
                quote(field.trim_matches('_')).replace("\"\"", "\"column\"")
            );
        }
    }
    t
}

pub fn run(args: &Args, json: bool) -> Outcome {
    let bytes = std::fs::read(&args.file)
        .map_err(|e| Failure(format!("cannot read {}: {e}", args.file.display())))?;
    // No schema yet: the delimiter is found from the header alone, unless --delimiter says.
    let declared = args.read.over(&Format {
        delimiter: Delimiter::Auto,
        ..Format::default()
    })?;
    let decoded = decode_all(&bytes, None, &declared, args.read.sheet.as_deref())
        .map_err(|e| Failure(format!("cannot read {}: {e}", args.file.display())))?;
    let draft = draft(
        &decoded,
        &declared,
        &schema_name(&args.file),
        args.key.as_deref(),
        args.rows,
    )?;
    if json {
        crate::output::json(&draft);
    } else {
        crate::output::print(&draft.toml);
        eprintln!("{}", draft.key_note);
    }
    Ok(ExitCode::SUCCESS)
}
