//! Query filters both servers answer from an index. MongoDB plans an `$or` of key equalities with
//! the key index; SecantusDB (the local server) scans the collection for any `$or`, and for a
//! filter on two fields unless one index covers exactly those fields. So the store asks by `$in`
//! over one field, or over each field of a composite key (its unique index covers them all), and
//! never with `$or` (tests/query_plans.rs holds every shape the store sends to this).

use std::collections::HashSet;

use bson::{doc, Bson, Document};

/// Documents whose key is one of `keys` (the values of `key_fields`, in order). A composite key
/// asks for every field's values at once, a superset of `keys` (the cross product): callers keep
/// only the documents whose key they asked for. Rows come sorted by key in most files, so the
/// superset is the batch itself or little more.
pub(super) fn keys_filter(key_fields: &[&str], keys: &[Vec<Bson>]) -> Document {
    let mut filter = Document::new();
    for (i, field) in key_fields.iter().enumerate() {
        let mut seen = HashSet::new();
        let values: Vec<Bson> = keys
            .iter()
            .filter_map(|key| key.get(i))
            .filter(|v| seen.insert(v.to_string()))
            .cloned()
            .collect();
        filter.insert(*field, doc! {"$in": values});
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_one_in_and_a_composite_key_one_in_per_field() {
        let single = keys_filter(
            &["sku"],
            &[vec!["A".into()], vec!["B".into()], vec!["A".into()]],
        );
        assert_eq!(single, doc! {"sku": {"$in": ["A", "B"]}});
        let composite = keys_filter(
            &["sku", "warehouse"],
            &[
                vec!["A".into(), "north".into()],
                vec!["A".into(), "south".into()],
            ],
        );
        assert_eq!(
            composite,
            doc! {"sku": {"$in": ["A"]}, "warehouse": {"$in": ["north", "south"]}}
        );
    }
}
