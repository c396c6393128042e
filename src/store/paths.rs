//! Dotted field paths of BSON documents, as `$set` and the stored products spell them, and key
//! values as text.

use bson::{Bson, Document};

use crate::schema::join_key;

/// Sub-documents become dotted paths so `$set` merges them field by field.
pub(super) fn flatten(prefix: &str, doc: &Document, out: &mut Document) {
    for (k, v) in doc {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Bson::Document(sub) if !sub.is_empty() => flatten(&path, sub, out),
            other => {
                out.insert(path, other.clone());
            }
        }
    }
}

/// Sets a dotted path, creating sub-documents on the way (the inverse of [`flatten`]).
pub(super) fn insert_path(doc: &mut Document, path: &str, value: Bson) {
    match path.split_once('.') {
        None => {
            doc.insert(path, value);
        }
        Some((head, rest)) => {
            if !matches!(doc.get(head), Some(Bson::Document(_))) {
                doc.insert(head, Document::new());
            }
            if let Some(Bson::Document(sub)) = doc.get_mut(head) {
                insert_path(sub, rest, value);
            }
        }
    }
}

/// The value at the dotted `path` of `doc`, if any.
pub(super) fn lookup<'d>(doc: &'d Document, path: &str) -> Option<&'d Bson> {
    let mut parts = path.split('.');
    let mut value = doc.get(parts.next()?)?;
    for part in parts {
        value = value.as_document()?.get(part)?;
    }
    Some(value)
}

/// The key text of a stored or staged document (its key fields' values joined as the transform
/// joins them), so keys read back from the database compare with keys from a file.
pub(super) fn key_text(doc: &Document, key_fields: &[impl AsRef<str>]) -> String {
    let parts: Vec<String> = key_fields
        .iter()
        .map(|f| lookup(doc, f.as_ref()).map(bson_text).unwrap_or_default())
        .collect();
    join_key(parts.iter().map(String::as_str))
}

/// A key value as text: strings as they are, other values as BSON displays them.
pub(super) fn bson_text(v: &Bson) -> String {
    match v {
        Bson::String(s) => s.clone(),
        other => other.to_string(),
    }
}
