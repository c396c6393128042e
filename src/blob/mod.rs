//! S3: the source file, staged chunks and report artifacts.

use aws_sdk_s3::primitives::ByteStream;

use crate::aws::classify;
use crate::error::ChuteError;
use crate::plan::ChunkPlan;

/// What HeadObject tells about a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub etag: String,
    pub size: u64,
    pub version_id: Option<String>,
    /// User metadata (`x-amz-meta-*`), keys lower-case.
    pub metadata: std::collections::HashMap<String, String>,
}

#[derive(Clone)]
pub struct Blob {
    client: aws_sdk_s3::Client,
}

impl Blob {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        // Local S3 stand-ins answer on one host name: path-style addressing (CHUTE_S3_PATH_STYLE=1).
        let path_style =
            std::env::var("CHUTE_S3_PATH_STYLE").is_ok_and(|v| v == "1" || v == "true");
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build();
        Blob {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ChuteError> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&format!("s3://{bucket}/{key}"), e))?;
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

    /// The object's body as a stream, failing if it changed since `etag` was seen.
    pub async fn stream(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<ByteStream, ChuteError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_if_match(etag.map(quote_etag))
            .send()
            .await
            .map_err(|e| classify(&format!("s3://{bucket}/{key}"), e))?;
        Ok(out.body)
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
        let (start, end) = (chunk.start, chunk.end);
        if end <= start {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={}-{}", start, end - 1))
            .if_match(quote_etag(etag))
            .send()
            .await
            .map_err(|e| classify(&format!("s3://{bucket}/{key}"), e))?;
        collect(out.body, &format!("s3://{bucket}/{key}")).await
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, ChuteError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify(&format!("s3://{bucket}/{key}"), e))?;
        collect(out.body, &format!("s3://{bucket}/{key}")).await
    }

    /// Like [`Blob::get`], `None` when the object does not exist.
    pub async fn get_if_exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, ChuteError> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => collect(out.body, &format!("s3://{bucket}/{key}"))
                .await
                .map(Some),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(classify(&format!("s3://{bucket}/{key}"), e)),
        }
    }

    /// Stores a value as JSON (plans, chunk outcomes).
    pub async fn put_json<T: serde::Serialize>(
        &self,
        bucket: &str,
        key: &str,
        value: &T,
    ) -> Result<(), ChuteError> {
        let body =
            serde_json::to_vec(value).map_err(|e| ChuteError::Fatal(format!("{key}: {e}")))?;
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
            .map_err(|e| classify(&format!("s3://{bucket}/{key}"), e))?;
        Ok(())
    }
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
