//! The shared ETag cache in the `guardian_http` bucket.
//!
//! Key: `e.<sha256 of the URL>`; value: the ETag, the JSON body and the next-page link.
//! Every worker of the fleet shares it, so the second scan of a repository by *any* worker
//! revalidates with `If-None-Match` and receives a free 304. Bodies above
//! [`MAX_CACHED_BYTES`] are not cached (the bucket's message size limit); cache failures
//! only cost a full request, never correctness.

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Page;

/// Largest body kept in the cache (NATS' default max payload is 1 MiB).
pub const MAX_CACHED_BYTES: usize = 900 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    pub v: u32,
    pub etag: String,
    pub body: serde_json::Value,
    #[serde(default)]
    pub next: Option<String>,
}

impl CacheEntry {
    pub fn page(&self) -> Page {
        Page {
            body: self.body.clone(),
            next: self.next.clone(),
        }
    }
}

#[derive(Clone)]
pub struct EtagCache {
    store: kv::Store,
}

impl EtagCache {
    pub fn new(store: kv::Store) -> Self {
        EtagCache { store }
    }

    fn key(url: &str) -> String {
        format!("e.{}", hex::encode(Sha256::digest(url.as_bytes())))
    }

    pub async fn get(&self, url: &str) -> Option<CacheEntry> {
        match self.store.get(Self::key(url)).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error.message = %e, "ETag cache read failed");
                None
            }
        }
    }

    pub async fn put(&self, url: &str, etag: &str, page: &Page) {
        let entry = CacheEntry {
            v: 1,
            etag: etag.to_string(),
            body: page.body.clone(),
            next: page.next.clone(),
        };
        let Ok(bytes) = serde_json::to_vec(&entry) else {
            return;
        };
        if bytes.len() > MAX_CACHED_BYTES {
            return;
        }
        if let Err(e) = self.store.put(Self::key(url), bytes.into()).await {
            tracing::debug!(error.message = %e, "ETag cache write failed");
        }
    }
}
