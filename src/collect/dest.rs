//! Where a lake's files go: a folder, or an S3-compatible object store.
//!
//! Both write each file once: a folder through a hard link from a
//! temporary file (the link fails when the name exists), an object store
//! with a create-only put (`If-None-Match: *`). A name that exists holds the
//! same messages (names come from content, `lake.rs`), so "already there"
//! is success — which is what makes a retry, or a redelivery to the same
//! collector, harmless.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use super::lake::LakeFile;
use crate::compile::LakeDest;

/// Why a file was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// The store refused our credentials (exit 77).
    #[error("refused: {0}")]
    Refused(String),
    /// Anything else: retried.
    #[error("{0}")]
    Failed(String),
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Written,
    /// A file of that name (the same content) was there already.
    AlreadyThere,
}

/// An open destination.
pub enum Dest {
    Folder(PathBuf),
    S3 { store: Arc<dyn ObjectStore>, prefix: String },
}

impl Dest {
    /// Reads the credentials and makes the client; nothing is sent yet.
    pub fn open(plan: &LakeDest) -> Result<Dest, String> {
        match plan {
            LakeDest::Folder { path } => Ok(Dest::Folder(path.clone())),
            LakeDest::S3 { bucket, prefix, endpoint, region, access_key, secret_key } => {
                crate::tls::install_provider();
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_access_key_id(access_key.read().map_err(|e| format!("access_key: {e}"))?)
                    .with_secret_access_key(secret_key.read().map_err(|e| format!("secret_key: {e}"))?)
                    .with_retry(object_store::RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(60),
                        ..Default::default()
                    });
                if let Some(e) = endpoint {
                    // A local store serves buckets as paths, often over plain HTTP.
                    b = b
                        .with_endpoint(e)
                        .with_allow_http(e.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                let store = b.build().map_err(|e| format!("s3://{bucket}: {e}"))?;
                Ok(Dest::S3 { store: Arc::new(store), prefix: prefix.clone() })
            }
        }
    }

    /// Writes one file under its key, once.
    pub async fn put(&self, file: &LakeFile) -> Result<Put, PutError> {
        match self {
            Dest::Folder(root) => {
                let (root, local, key) = (root.clone(), file.local.clone(), file.key.clone());
                tokio::task::spawn_blocking(move || put_file(&root, &local, &key))
                    .await
                    .map_err(|e| PutError::Failed(e.to_string()))?
            }
            Dest::S3 { store, prefix } => {
                let key = if prefix.is_empty() { file.key.clone() } else { format!("{prefix}/{}", file.key) };
                let bytes = tokio::fs::read(&file.local)
                    .await
                    .map_err(|e| PutError::Failed(format!("{}: {e}", file.local.display())))?;
                let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
                match store.put_opts(&object_store::path::Path::from(key), PutPayload::from(bytes), opts).await {
                    Ok(_) => Ok(Put::Written),
                    Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                        Ok(Put::AlreadyThere)
                    }
                    Err(
                        e
                        @ (object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }),
                    ) => Err(PutError::Refused(e.to_string())),
                    Err(e) => Err(PutError::Failed(e.to_string())),
                }
            }
        }
    }
}

/// `root/key`, created from `local` unless it exists; durable before it returns.
fn put_file(root: &Path, local: &Path, key: &str) -> Result<Put, PutError> {
    let io = |what: &Path, e: std::io::Error| {
        let text = format!("{}: {e}", what.display());
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => PutError::Refused(text),
            _ => PutError::Failed(text),
        }
    };
    let target = root.join(key);
    let dir = target.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tmp =
        dir.join(format!(".{}.tmp-{}", target.file_name().and_then(|n| n.to_str()).unwrap_or("f"), std::process::id()));
    std::fs::copy(local, &tmp).map_err(|e| io(&tmp, e))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| io(&tmp, e))?;
    let linked = std::fs::hard_link(&tmp, &target);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io(dir, e))?;
            Ok(Put::Written)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Put::AlreadyThere),
        Err(e) => Err(io(&target, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_takes_each_name_once() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.parquet");
        std::fs::write(&src, b"one").unwrap();
        let root = dir.path().join("lake");
        let key = "readings/site=a/date=2026-12-06/x.parquet";
        assert_eq!(put_file(&root, &src, key).unwrap(), Put::Written);
        std::fs::write(&src, b"two").unwrap();
        assert_eq!(put_file(&root, &src, key).unwrap(), Put::AlreadyThere);
        assert_eq!(std::fs::read(root.join(key)).unwrap(), b"one");
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(root.join("readings/site=a/date=2026-12-06")).unwrap().collect();
        assert_eq!(left.len(), 1);
    }
}
