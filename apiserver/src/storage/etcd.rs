//! The etcd side of storage: the only code in rkube that talks to etcd.
//!
//! As in kube-apiserver's etcd3 store, every object is one key holding its
//! JSON; the object's `resourceVersion` is the key's mod revision, and a
//! list's is the store revision in the response header. Writes are
//! transactions that compare the mod revision, which is what turns a stale
//! update into 409 Conflict without any locking in the apiserver.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
    Watcher,
};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Create found the key already there.
    #[error("key exists")]
    AlreadyExists,
    /// The compare on mod revision failed: someone else wrote first.
    #[error("conflict: object was modified (now at {current:?})")]
    Conflict { current: Option<(Vec<u8>, i64)> },
    #[error("key not found")]
    NotFound,
    /// The revision asked for has been compacted away.
    #[error("revision {0} has been compacted")]
    Compacted(i64),
    #[error("etcd: {0}")]
    Etcd(String),
}

impl From<etcd_client::Error> for StorageError {
    fn from(e: etcd_client::Error) -> Self {
        let msg = e.to_string();
        if msg.contains("required revision has been compacted") {
            StorageError::Compacted(0)
        } else {
            StorageError::Etcd(msg)
        }
    }
}

/// One key-value as read back: the raw value and its mod revision.
#[derive(Debug, Clone)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// A connection to the etcd cluster. Cheap to clone: the underlying gRPC
/// channel is shared.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
}

impl Etcd {
    /// Connects and checks that etcd answers; the caller turns a failure into
    /// a clear startup error.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Self, StorageError> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(Duration::from_secs(30))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = tokio::time::timeout(timeout, Client::connect(endpoints, Some(opts)))
            .await
            .map_err(|_| StorageError::Etcd(format!("timed out after {timeout:?} connecting to {endpoints:?}")))??;
        let etcd = Etcd { client };
        tokio::time::timeout(timeout, etcd.current_revision())
            .await
            .map_err(|_| StorageError::Etcd(format!("etcd at {endpoints:?} did not answer within {timeout:?}")))??;
        Ok(etcd)
    }

    /// The store's current revision, read with a count-only range so it
    /// costs etcd next to nothing. A quorum read: it proves etcd is healthy.
    pub async fn current_revision(&self) -> Result<i64, StorageError> {
        let resp = self
            .client
            .kv_client()
            .get("\0", Some(GetOptions::new().with_count_only()))
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    pub async fn get(&self, key: &str) -> Result<Option<Kv>, StorageError> {
        let resp = self.client.kv_client().get(key, None).await?;
        Ok(resp.kvs().first().map(to_kv))
    }

    /// Range read of everything under `prefix` starting at `start` (inclusive),
    /// at `revision` (0 = newest), at most `limit` keys (0 = all).
    /// Returns the kvs, the revision read at, and whether more keys remain.
    pub async fn range(
        &self,
        prefix: &str,
        start: Option<&str>,
        revision: i64,
        limit: i64,
    ) -> Result<(Vec<Kv>, i64, bool), StorageError> {
        let end = prefix_end(prefix);
        let from = start.unwrap_or(prefix);
        let opts = GetOptions::new().with_range(end).with_revision(revision).with_limit(limit);
        let resp = self.client.kv_client().get(from, Some(opts)).await.map_err(|e| match StorageError::from(e) {
            StorageError::Compacted(_) => StorageError::Compacted(revision),
            other => other,
        })?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((resp.kvs().iter().map(to_kv).collect(), rev, resp.more()))
    }

    /// Create: succeeds only if the key does not exist (mod revision 0).
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let resp = self.client.kv_client().txn(txn).await?;
        if !resp.succeeded() {
            return Err(StorageError::AlreadyExists);
        }
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Update if the key is still at `expected` mod revision. On conflict the
    /// current value comes back so the caller can retry without another read.
    pub async fn update(&self, key: &str, expected: i64, value: Vec<u8>) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.client.kv_client().txn(txn).await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(0));
        }
        Err(conflict_from(&resp.op_responses()))
    }

    /// Delete if the key is still at `expected` mod revision.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.client.kv_client().txn(txn).await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(0));
        }
        Err(conflict_from(&resp.op_responses()))
    }

    /// Plain put, for allocator bitmaps and other non-object keys that are
    /// guarded by `update` instead when they need to be.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64, StorageError> {
        let resp = self.client.kv_client().put(key, value, None).await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// One etcd watch over a prefix from `start_revision`, with previous
    /// values so that deletions carry the object they deleted.
    pub async fn watch_prefix(&self, prefix: &str, start_revision: i64) -> Result<(Watcher, WatchStream), StorageError> {
        let opts = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(start_revision)
            .with_prev_key()
            .with_progress_notify();
        Ok(self.client.watch_client().watch(prefix, Some(opts)).await?)
    }

    /// Compact history up to `revision` (tests use it to provoke 410 Gone).
    pub async fn compact(&self, revision: i64) -> Result<(), StorageError> {
        self.client.kv_client().compact(revision, None).await?;
        Ok(())
    }
}

fn conflict_from(ops: &[TxnOpResponse]) -> StorageError {
    for op in ops {
        if let TxnOpResponse::Get(g) = op {
            return match g.kvs().first() {
                Some(kv) => StorageError::Conflict { current: Some((kv.value().to_vec(), kv.mod_revision())) },
                None => StorageError::NotFound,
            };
        }
    }
    StorageError::Conflict { current: None }
}

fn to_kv(kv: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        mod_revision: kv.mod_revision(),
    }
}

/// The first key after every key starting with `prefix` (etcd's range end).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
