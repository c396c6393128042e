//! Staged documents: the concatenated BSON the transform writes, read back one document at a time
//! and split into the key, the fields to `$set` and the insert-only defaults.

use bson::{Bson, Document, RawDocument};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::paths::{bson_text, flatten, lookup};
use crate::error::{ChuteError, Position};
use crate::schema::join_key;

/// One staged document, split into what the update statement needs.
pub(super) struct StagedDoc {
    pub key: Vec<(String, Bson)>,
    pub key_text: String,
    pub position: Position,
    pub hash: String,
    set: Document,
    defaults: Document,
}

impl StagedDoc {
    pub fn parse(raw: &RawDocument, key_fields: &[&str]) -> Result<StagedDoc, ChuteError> {
        let bad = |what: &str| ChuteError::Fatal(format!("staged document is malformed: {what}"));
        let doc = Document::try_from(raw).map_err(|e| bad(&e.to_string()))?;
        let meta = doc.get_document("_import").map_err(|_| bad("no _import"))?;
        let row = meta.get_i64("row").map_err(|_| bad("no _import.row"))? as u64;
        let line = meta.get_i64("line").map_err(|_| bad("no _import.line"))? as u64;
        let hash = meta
            .get_str("hash")
            .map_err(|_| bad("no _import.hash"))?
            .to_string();
        let mut defaults = Document::new();
        if let Ok(d) = meta.get_document("defaults") {
            flatten("", d, &mut defaults);
        }
        let mut set = Document::new();
        for (k, v) in &doc {
            if k == "_import" {
                continue;
            }
            match v {
                Bson::Document(sub) => flatten(k, sub, &mut set),
                other => {
                    set.insert(k.clone(), other.clone());
                }
            }
        }
        let key: Vec<(String, Bson)> = key_fields
            .iter()
            .map(|f| {
                lookup(&doc, f)
                    .cloned()
                    .map(|v| (f.to_string(), v))
                    .ok_or_else(|| bad(&format!("row {row} has no key field {f}")))
            })
            .collect::<Result<_, _>>()?;
        let parts: Vec<String> = key.iter().map(|(_, v)| bson_text(v)).collect();
        let key_text = join_key(parts.iter().map(String::as_str));
        Ok(StagedDoc {
            key,
            key_text,
            position: Position { row, line },
            hash,
            set,
            defaults,
        })
    }

    /// The row's fields as dotted paths, for `$set`.
    pub fn fields(&self) -> impl Iterator<Item = (&String, &Bson)> {
        self.set.iter()
    }

    /// The value the row gives the dotted field `path`, if any.
    pub fn field(&self, path: &str) -> Option<&Bson> {
        self.set.get(path)
    }

    /// Defaults of columns the file lacks: written when the product is inserted, never after.
    pub fn defaults(&self) -> impl Iterator<Item = (&String, &Bson)> {
        self.defaults.iter()
    }
}

/// Appends the next staged document of `staged` to `batch`; `false` at a clean end of the stream.
/// `read` (documents read before) only names the place of a problem.
pub(super) async fn read_staged(
    staged: &mut (impl AsyncRead + Unpin),
    batch: &mut Vec<u8>,
    read: u64,
) -> Result<bool, ChuteError> {
    let truncated =
        || ChuteError::Fatal(format!("staged file is truncated after {read} documents"));
    let cut_off = |e: std::io::Error| {
        ChuteError::Transient(format!(
            "reading the staged file was cut off after {read} documents: {e}"
        ))
    };
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match staged.read(&mut prefix[filled..]).await.map_err(cut_off)? {
            0 if filled == 0 => return Ok(false),
            0 => return Err(truncated()),
            n => filled += n,
        }
    }
    let len = i32::from_le_bytes(prefix);
    if !(5..=MAX_STAGED_DOCUMENT).contains(&len) {
        return Err(ChuteError::Fatal(format!(
            "staged document {} has an impossible length {len}",
            read + 1
        )));
    }
    let start = batch.len();
    batch.extend_from_slice(&prefix);
    batch.resize(start + len as usize, 0);
    match staged.read_exact(&mut batch[start + 4..]).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(truncated()),
        Err(e) => Err(cut_off(e)),
    }
}

/// MongoDB's document size limit, which no staged document can exceed.
const MAX_STAGED_DOCUMENT: i32 = 16 * 1024 * 1024;

/// Splits concatenated BSON documents without copying.
pub fn split_staged(mut bytes: &[u8]) -> Result<Vec<&RawDocument>, ChuteError> {
    let mut docs = Vec::new();
    while !bytes.is_empty() {
        let len = bytes
            .get(..4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .unwrap_or(0);
        if len < 5 || len > bytes.len() {
            return Err(ChuteError::Fatal(format!(
                "staged file is truncated after {} documents",
                docs.len()
            )));
        }
        let doc = RawDocument::from_bytes(&bytes[..len]).map_err(|e| ChuteError::Unreadable {
            what: format!("staged document {}", docs.len() + 1),
            source: e.into(),
        })?;
        docs.push(doc);
        bytes = &bytes[len..];
    }
    Ok(docs)
}

/// The digest entries ([`crate::delta::Entry`]: key text as the writer joins it, content hash,
/// row) of a part of staged documents, unsorted. Reads only the key fields and `_import` of each
/// document, in place.
pub fn digest_part(
    bytes: &[u8],
    key_fields: &[&str],
) -> Result<Vec<crate::delta::Entry>, ChuteError> {
    split_staged(bytes)?
        .into_iter()
        .map(|raw| digest_entry(raw, key_fields))
        .collect()
}

/// One staged document's digest entry, read in place.
pub(super) fn digest_entry(
    raw: &RawDocument,
    key_fields: &[&str],
) -> Result<crate::delta::Entry, ChuteError> {
    let bad = |what: String| ChuteError::Fatal(format!("staged document is malformed: {what}"));
    let meta = raw
        .get_document("_import")
        .map_err(|_| bad("no _import".into()))?;
    let row = meta
        .get_i64("row")
        .map_err(|_| bad("no _import.row".into()))? as u64;
    let hash = meta
        .get_str("hash")
        .ok()
        .and_then(crate::delta::entries::parse_hash)
        .ok_or_else(|| bad(format!("row {row}: no hex _import.hash")))?;
    let parts: Vec<String> = key_fields
        .iter()
        .map(|field| {
            raw_lookup(raw, field)
                .and_then(|v| Bson::try_from(v.to_raw_bson()).ok())
                .map(|v| bson_text(&v))
                .ok_or_else(|| bad(format!("row {row} has no key field {field}")))
        })
        .collect::<Result<_, _>>()?;
    let key = join_key(parts.iter().map(String::as_str));
    Ok(crate::delta::Entry::new(key, hash, row))
}

/// The value at dotted `path` of a raw document.
fn raw_lookup<'d>(doc: &'d RawDocument, path: &str) -> Option<bson::RawBsonRef<'d>> {
    let mut parts = path.split('.');
    let mut value = doc.get(parts.next()?).ok()??;
    for part in parts {
        value = value.as_document()?.get(part).ok()??;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_entry_has_the_key_and_hash_the_writer_reads() {
        let mut staged = Vec::new();
        for (sku, n) in [("A-1", 7_i64), ("B-2", 8)] {
            let doc = bson::doc! {"sku": sku, "n": n, "attributes": {"size": n},
            "_import": {"row": n, "line": n + 1, "hash": format!("{n:032x}")}};
            doc.to_writer(&mut staged).unwrap();
        }
        for fields in [vec!["sku"], vec!["sku", "attributes.size"]] {
            let digest = digest_part(&staged, &fields).unwrap();
            let docs = split_staged(&staged).unwrap();
            for (entry, raw) in digest.iter().zip(docs) {
                let parsed = StagedDoc::parse(raw, &fields).unwrap();
                assert_eq!(entry.key, parsed.key_text);
                assert_eq!(entry.row, parsed.position.row);
                assert_eq!(
                    Some(entry.hash),
                    crate::delta::entries::parse_hash(&parsed.hash)
                );
            }
        }
    }
}
