//! S3: the source file, staged chunks and report artifacts.

use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::aws::classify;
use crate::error::ChuteError;
use crate::records::ChunkPlan;

/// What HeadObject tells about a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub etag: String,
    pub size: u64,
    pub version_id: Option<String>,
    /// User metadata (`x-amz-meta-*`), keys lower-case.
    pub metadata: std::collections::HashMap<String, String>,
}

/// One object a listing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub etag: String,
    pub size: u64,
    /// RFC 3339.
    pub last_modified: String,
}

#[derive(Clone)]
pub struct Blob {
    client: aws_sdk_s3::Client,
}

impl Blob {
    /// `path_style` for local S3 stand-ins, which answer on one host name.
    pub fn new(sdk: &aws_config::SdkConfig, path_style: bool) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build();
        Blob {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }

    /// Every object under `prefix`, in key order (ListObjectsV2, page by page).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Listed>, ChuteError> {
        let mut listed = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| classify(&location(bucket, prefix), e))?;
            for object in out.contents() {
                listed.push(Listed {
                    key: object.key().unwrap_or_default().to_string(),
                    etag: object
                        .e_tag()
                        .unwrap_or_default()
                        .trim_matches('"')
                        .to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    last_modified: object
                        .last_modified()
                        .and_then(|t| t.fmt(aws_sdk_s3::primitives::DateTimeFormat::DateTime).ok())
                        .unwrap_or_default(),
                });
            }
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(listed);
            }
        }
    }

    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ChuteError> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&location(bucket, key), e))?;
        Ok(ObjectInfo {
            etag: out
                .e_tag()
                .unwrap_or_default()
                .trim_matches('"')
                .to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            version_id: out.version_id().map(str::to_string),
            metadata: out
                .metadata()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect(),
        })
    }

    /// GetObject of `[start, end)` (the whole object without a range), failing if the object
    /// changed since `etag` was seen; the caller sorts the SDK's error (a missing object may be
    /// an answer).
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
        etag: Option<&str>,
    ) -> Result<ByteStream, SdkError<GetObjectError, HttpResponse>> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_range(range.map(|(start, end)| match end {
                u64::MAX => format!("bytes={start}-"),
                end => format!("bytes={}-{}", start, end - 1),
            }))
            .set_if_match(etag.map(quote_etag))
            .send()
            .await?;
        Ok(out.body)
    }

    /// The object's body as a stream, failing if it changed since `etag` was seen.
    pub async fn stream(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<ByteStream, ChuteError> {
        self.get_object(bucket, key, None, etag)
            .await
            .map_err(|e| classify(&location(bucket, key), e))
    }

    /// One chunk's bytes (`[start, end)` of the object), failing if the object changed since the
    /// run saw `etag`, so a run never reads half an old file and half a new one.
    pub async fn get_chunk(
        &self,
        bucket: &str,
        key: &str,
        chunk: &ChunkPlan,
        etag: &str,
    ) -> Result<Vec<u8>, ChuteError> {
        if chunk.end <= chunk.start {
            return Ok(Vec::new());
        }
        let range = Some((chunk.start, chunk.end));
        let body = self
            .get_object(bucket, key, range, Some(etag))
            .await
            .map_err(|e| classify(&location(bucket, key), e))?;
        collect(body, &location(bucket, key)).await
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, ChuteError> {
        let body = self
            .get_object(bucket, key, None, None)
            .await
            .map_err(|e| classify(&location(bucket, key), e))?;
        collect(body, &location(bucket, key)).await
    }

    /// Reads a JSON object this run stored (a plan, a chunk outcome).
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<T, ChuteError> {
        parse_json(key, &self.get(bucket, key).await?)
    }

    /// Like [`Blob::get_json`], `None` when the object does not exist (the step did not finish).
    pub async fn get_json_if_exists<T: serde::de::DeserializeOwned>(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<T>, ChuteError> {
        match self.get_object(bucket, key, None, None).await {
            Ok(body) => parse_json(key, &collect(body, &location(bucket, key)).await?).map(Some),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(classify(&location(bucket, key), e)),
        }
    }

    /// A GET link to the object valid for `seconds`; `None` when it cannot be signed (the email
    /// then names the S3 location instead).
    pub async fn presign_get(&self, bucket: &str, key: &str, seconds: u64) -> Option<String> {
        let config = PresigningConfig::expires_in(Duration::from_secs(seconds)).ok()?;
        let request = self.client.get_object().bucket(bucket).key(key);
        let presigned = request.presigned(config).await.ok()?;
        Some(presigned.uri().to_string())
    }

    /// Stores a value as JSON (plans, chunk outcomes).
    pub async fn put_json<T: serde::Serialize>(
        &self,
        bucket: &str,
        key: &str,
        value: &T,
    ) -> Result<(), ChuteError> {
        let body = serde_json::to_vec(value).map_err(|e| ChuteError::Unwritable {
            what: key.into(),
            source: e.into(),
        })?;
        self.put(bucket, key, body, "application/json").await
    }

    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), ChuteError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| classify(&location(bucket, key), e))?;
        Ok(())
    }

    /// Deletes the object (a retired snapshot piece); deleting one that is gone is no error.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), ChuteError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&location(bucket, key), e))?;
        Ok(())
    }

    /// Stores the parts arriving on `parts` as one object, uploading each while the producer fills
    /// the next: one part is a plain PUT, more are a multipart upload (every part but the last must
    /// be at least 5 MiB), none an empty object. On failure the multipart upload is aborted so no
    /// parts are left behind. Returns the object's size.
    pub async fn put_parts(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        mut parts: tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) -> Result<u64, ChuteError> {
        let Some(first) = parts.recv().await else {
            self.put(bucket, key, Vec::new(), content_type).await?;
            return Ok(0);
        };
        let Some(second) = parts.recv().await else {
            let size = first.len() as u64;
            self.put(bucket, key, first, content_type).await?;
            return Ok(size);
        };
        let what = location(bucket, key);
        let upload_id = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| classify(&what, e))?
            .upload_id
            .ok_or_else(|| ChuteError::Transient(format!("{what}: no multipart upload id")))?;
        let uploaded = self
            .upload_parts(bucket, key, &upload_id, [first, second], &mut parts)
            .await;
        let completed = match uploaded {
            Ok((size, completed)) => self
                .client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(completed))
                        .build(),
                )
                .send()
                .await
                .map(|_| size)
                .map_err(|e| classify(&what, e)),
            Err(e) => Err(e),
        };
        if completed.is_err() {
            // Best effort: a leftover upload only costs storage until the bucket's lifecycle rule.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        completed
    }

    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        first: [Vec<u8>; 2],
        rest: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) -> Result<(u64, Vec<CompletedPart>), ChuteError> {
        let mut completed = Vec::new();
        let mut size = 0;
        let mut first = first.into_iter();
        loop {
            let part = match first.next() {
                Some(part) => part,
                None => match rest.recv().await {
                    Some(part) => part,
                    None => return Ok((size, completed)),
                },
            };
            let number = completed.len() as i32 + 1;
            size += part.len() as u64;
            let out = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(part))
                .send()
                .await
                .map_err(|e| classify(&format!("s3://{bucket}/{key} part {number}"), e))?;
            completed.push(
                CompletedPart::builder()
                    .set_e_tag(out.e_tag)
                    .part_number(number)
                    .build(),
            );
        }
    }

    /// The object's body as an `AsyncRead`, for reading a staged file document by document.
    pub async fn reader(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<impl tokio::io::AsyncRead + Unpin, ChuteError> {
        Ok(self.stream(bucket, key, None).await?.into_async_read())
    }

    /// [`Blob::reader`] from byte `offset` on (a resumed import skips what it wrote before),
    /// failing if the object is no longer the version `etag` names. `offset` must be inside the
    /// object (S3 refuses a range starting at its end).
    pub async fn reader_from(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        etag: &str,
    ) -> Result<impl tokio::io::AsyncRead + Unpin, ChuteError> {
        let range = (offset > 0).then_some((offset, u64::MAX));
        let body = self
            .get_object(bucket, key, range, Some(etag))
            .await
            .map_err(|e| classify(&location(bucket, key), e))?;
        Ok(body.into_async_read())
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, ChuteError> {
    serde_json::from_slice(bytes).map_err(|e| ChuteError::Unreadable {
        what: key.into(),
        source: e.into(),
    })
}

/// `s3://bucket/key`, as errors name an object.
fn location(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

fn quote_etag(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_string()
    } else {
        format!("\"{etag}\"")
    }
}

async fn collect(body: ByteStream, what: &str) -> Result<Vec<u8>, ChuteError> {
    body.collect()
        .await
        .map(|b| b.into_bytes().to_vec())
        .map_err(|e| ChuteError::Transient(format!("reading {what} was cut off: {e}")))
}
