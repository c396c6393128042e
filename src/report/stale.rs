//! stale.csv: every key a full refresh found stale, written as the database lists them (with the
//! adapters: it feeds a streaming upload).

use tokio::sync::mpsc::{Receiver, Sender};

use super::neutralise;

/// Turns batches of stale keys into stale.csv parts of at least `part_bytes` (S3's multipart
/// minimum is 5 MiB) and sends them on: memory holds one part, whatever the number of keys.
/// Ends when `keys` closes; stops early (dropping the rest) if `parts` stops reading.
pub async fn stale_csv(mut keys: Receiver<Vec<String>>, parts: Sender<Vec<u8>>, part_bytes: usize) {
    let mut part = b"key\n".to_vec();
    while let Some(batch) = keys.recv().await {
        for key in batch {
            let mut out = csv::WriterBuilder::new().from_writer(&mut part);
            out.write_record([neutralise(&key).as_ref()])
                .expect("writing to memory succeeds");
            drop(out);
        }
        if part.len() >= part_bytes && parts.send(std::mem::take(&mut part)).await.is_err() {
            return;
        }
    }
    if !part.is_empty() {
        let _ = parts.send(part).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn written(batches: Vec<Vec<&str>>, part_bytes: usize) -> Vec<Vec<u8>> {
        let (keys_tx, keys_rx) = tokio::sync::mpsc::channel(4);
        let (parts_tx, mut parts_rx) = tokio::sync::mpsc::channel(4);
        let writer = tokio::spawn(stale_csv(keys_rx, parts_tx, part_bytes));
        for batch in batches {
            keys_tx
                .send(batch.into_iter().map(str::to_string).collect())
                .await
                .unwrap();
        }
        drop(keys_tx);
        let mut parts = Vec::new();
        while let Some(part) = parts_rx.recv().await {
            parts.push(part);
        }
        writer.await.unwrap();
        parts
    }

    #[tokio::test]
    async fn keys_are_quoted_neutralised_and_cut_into_parts() {
        let parts = written(vec![vec!["A-1", "=cmd"], vec!["B,2"]], 10).await;
        let text: Vec<String> = parts
            .iter()
            .map(|p| String::from_utf8(p.clone()).unwrap())
            .collect();
        assert_eq!(text, ["key\nA-1\n'=cmd\n", "\"B,2\"\n"]);
    }

    #[tokio::test]
    async fn no_keys_is_a_header_only_file() {
        assert_eq!(written(vec![], 10).await, [b"key\n".to_vec()]);
    }
}
