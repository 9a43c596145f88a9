//! The etcd side of storage: the only code in rkube that talks to etcd.
//!
//! As in kube-apiserver's etcd3 store, every object is one key holding its
//! JSON; the object's `resourceVersion` is the key's mod revision, and a
//! list's is the store revision in the response header. Writes are
//! transactions that compare the mod revision, which is what turns a stale
//! update into 409 Conflict without any locking in the apiserver.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
    WatchStream, Watcher,
};
use tokio::time::Instant;

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
    /// etcd did not answer within the request timeout (e.g. it lost
    /// quorum). For a write the outcome is unknown.
    #[error("etcd request timed out: {0}")]
    Timeout(String),
    #[error("etcd: {0}")]
    Etcd(String),
}

impl From<etcd_client::Error> for StorageError {
    fn from(e: etcd_client::Error) -> Self {
        let msg = e.to_string();
        if msg.contains("required revision has been compacted") {
            StorageError::Compacted(0)
        } else if msg.contains("etcdserver: request timed out") {
            StorageError::Timeout(msg)
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

/// How bad an etcd error is for the endpoint that gave it.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The connection broke, the member could not answer, or it has no
    /// leader: another member may answer.
    Unavailable,
    /// An answer from etcd (conflict, compacted, …): not the endpoint's fault.
    Answer,
}

fn classify(e: &etcd_client::Error) -> Failure {
    let msg = e.to_string();
    if msg.contains("etcdserver: no leader") || msg.contains("etcdserver: leader changed") {
        return Failure::Unavailable;
    }
    let unavailable = match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
        ),
        _ => false,
    };
    if unavailable {
        Failure::Unavailable
    } else {
        Failure::Answer
    }
}

/// A connection to the etcd cluster. Cheap to clone: the clients are shared.
///
/// One gRPC client per member, one of them *pinned* (etcd clientv3's model
/// before its round-robin balancer): every request goes to the pinned
/// member; when it cannot answer in part of the time budget, the next
/// member is pinned and the request is sent again there.
///
/// Sending again is safe for every request rkube makes: reads trivially;
/// object writes because they are compare-and-swap transactions (at most
/// one copy can pass the compare, so a write is never applied twice); plain
/// puts, deletes and lease grants because doing them twice leaves the same
/// state. What a resend can change is the *answer*: when the first copy was
/// committed after all, the second fails its compare. So after a resent
/// transaction fails its compare, the key is read back, and if it holds
/// exactly what we wrote the write is reported as done ([`Etcd::create`],
/// [`Etcd::update`], [`Etcd::delete`]).
///
/// Why it matters: when the raft leader dies, proposals that followers
/// forwarded to it are dropped silently, and etcd itself would only answer
/// after its own 7 s timeout. Every call is bounded by the request timeout,
/// so an etcd that has lost quorum gives a quick 504 rather than a hung request.
#[derive(Clone)]
pub struct Etcd {
    members: Arc<Vec<(String, Client)>>,
    pinned: Arc<AtomicUsize>,
    request_timeout: Duration,
}

/// The default bound on one etcd call (rkube's `--etcd-request-timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

impl Etcd {
    /// Connects and checks that etcd answers; the caller turns a failure into
    /// a clear startup error.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Self, StorageError> {
        Self::connect_with(endpoints, timeout, DEFAULT_REQUEST_TIMEOUT).await
    }

    pub async fn connect_with(endpoints: &[String], timeout: Duration, request_timeout: Duration) -> Result<Self, StorageError> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(timeout.min(Duration::from_secs(2)))
            .with_timeout(Duration::from_secs(30))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let mut members = Vec::new();
        for e in endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            // Connections are lazy: a member that is down now is still
            // listed, and used once it is back.
            let client = Client::connect([e], Some(opts.clone())).await?;
            members.push((e.to_string(), client));
        }
        if members.is_empty() {
            return Err(StorageError::Etcd("no etcd endpoints given".into()));
        }
        let etcd = Etcd { members: Arc::new(members), pinned: Arc::new(AtomicUsize::new(0)), request_timeout };
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, etcd.current_revision()).await {
                Ok(Ok(_)) => return Ok(etcd),
                Ok(Err(_)) if Instant::now() + Duration::from_millis(200) < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(StorageError::Etcd(format!("etcd at {endpoints:?} did not answer within {timeout:?}")))
                }
            }
        }
    }

    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The member requests currently go to.
    pub fn pinned_endpoint(&self) -> &str {
        &self.members[self.pinned.load(Ordering::Relaxed) % self.members.len()].0
    }

    /// Moves on from member `from` (unless another request already did).
    fn unpin(&self, from: usize) {
        let n = self.members.len();
        if self.pinned.compare_exchange(from, (from + 1) % n, Ordering::Relaxed, Ordering::Relaxed).is_ok() && n > 1 {
            tracing::warn!(from = %self.members[from].0, to = %self.members[(from + 1) % n].0, "etcd member unavailable; switching");
        }
    }

    /// Runs `op` on the pinned member within the request timeout, failing
    /// over to the other members as described on [`Etcd`]. Also returns
    /// whether the request was sent more than once.
    async fn call<T, F, Fut>(&self, op: F) -> Result<(T, bool), StorageError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.request_timeout;
        let n = self.members.len();
        // A member that takes more than part of the budget is probably cut
        // off from the quorum, or was following a leader that just died.
        let per_try = if n > 1 { self.request_timeout / 2 } else { self.request_timeout };
        let mut tries = 0;
        loop {
            tries += 1;
            let i = self.pinned.load(Ordering::Relaxed) % n;
            let try_deadline = deadline.min(Instant::now() + per_try);
            let err = match tokio::time::timeout_at(try_deadline, op(self.members[i].1.clone())).await {
                Ok(Ok(v)) => return Ok((v, tries > 1)),
                Ok(Err(e)) => e,
                Err(_) => {
                    self.unpin(i);
                    if Instant::now() < deadline {
                        continue;
                    }
                    return Err(StorageError::Timeout(format!(
                        "no answer from etcd within {:?} (member {})",
                        self.request_timeout, self.members[i].0
                    )));
                }
            };
            if classify(&err) == Failure::Answer {
                return Err(err.into());
            }
            self.unpin(i);
            if Instant::now() >= deadline {
                return Err(err.into());
            }
            // Every member refused once: wait a little before going round
            // again (an election or a restart may be under way).
            if tries % n == 0 {
                let pause = Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                if Instant::now() >= deadline {
                    return Err(StorageError::Etcd(format!("no etcd member available: {err}")));
                }
            }
        }
    }

    /// [`Self::call`] without the resend flag.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StorageError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call(op).await.map(|(v, _)| v)
    }

    /// The store's current revision, read with a count-only range so it
    /// costs etcd next to nothing. A quorum read: it proves etcd is healthy.
    pub async fn current_revision(&self) -> Result<i64, StorageError> {
        let resp = self
            .run(|c| async move { c.kv_client().get("\0", Some(GetOptions::new().with_count_only())).await })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    pub async fn get(&self, key: &str) -> Result<Option<Kv>, StorageError> {
        let resp = self.run(|c| async move { c.kv_client().get(key, None).await }).await?;
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
        let resp = self
            .run(|c| {
                let opts = GetOptions::new().with_range(end.clone()).with_revision(revision).with_limit(limit);
                async move { c.kv_client().get(from, Some(opts)).await }
            })
            .await
            .map_err(|e| match e {
                StorageError::Compacted(_) => StorageError::Compacted(revision),
                other => other,
            })?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((resp.kvs().iter().map(to_kv).collect(), rev, resp.more()))
    }

    /// A transaction; `true` when it was sent more than once.
    async fn txn(&self, txn: Txn) -> Result<(etcd_client::TxnResponse, bool), StorageError> {
        self.call(|c| {
            let txn = txn.clone();
            async move { c.kv_client().txn(txn).await }
        })
        .await
    }

    /// Create: succeeds only if the key does not exist (mod revision 0).
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<i64, StorageError> {
        match self.put_if(key, 0, value).await {
            Err(StorageError::Conflict { .. } | StorageError::NotFound) => Err(StorageError::AlreadyExists),
            other => other,
        }
    }

    /// Update if the key is still at `expected` mod revision. On conflict the
    /// current value comes back so the caller can retry without another read.
    pub async fn update(&self, key: &str, expected: i64, value: Vec<u8>) -> Result<i64, StorageError> {
        self.put_if(key, expected, value).await
    }

    /// The compare-and-swap both writes are: put `value` if the key's mod
    /// revision is `expected` (0: absent), else read the key back.
    async fn put_if(&self, key: &str, expected: i64, value: Vec<u8>) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(key, value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let (resp, resent) = self.txn(txn).await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(0));
        }
        // Resent, and the key holds exactly our value (it carries a fresh
        // uid or resourceVersion-free body we just made): the first copy
        // was committed before the connection broke.
        match conflict_from(&resp.op_responses()) {
            StorageError::Conflict { current: Some((v, rev)) } if resent && v == value => Ok(rev),
            other => Err(other),
        }
    }

    /// Delete if the key is still at `expected` mod revision.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64, StorageError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(key, None)]);
        let (resp, resent) = self.txn(txn).await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(0));
        }
        match conflict_from(&resp.op_responses()) {
            // Resent and gone: the first copy deleted it.
            StorageError::NotFound if resent => Ok(resp.header().map(|h| h.revision()).unwrap_or(0)),
            other => Err(other),
        }
    }

    /// Plain put, for allocator bitmaps and other non-object keys that are
    /// guarded by `update` instead when they need to be.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64, StorageError> {
        let resp = self
            .run(|c| {
                let value = value.clone();
                async move { c.kv_client().put(key, value, None).await }
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Put with a time to live: the key is attached to a fresh etcd lease of
    /// `ttl`, and disappears when the lease expires unless put again (how
    /// kube-apiserver stores keys with a TTL, e.g. master leases).
    pub async fn put_with_ttl(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<i64, StorageError> {
        let secs = ttl.as_secs().max(1) as i64;
        let lease = self.run(|c| async move { c.lease_client().grant(secs, None).await }).await?;
        let id = lease.id();
        let resp = self
            .run(|c| {
                let value = value.clone();
                async move { c.kv_client().put(key, value, Some(PutOptions::new().with_lease(id))).await }
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Unconditional delete of one key (absent is fine).
    pub async fn delete_key(&self, key: &str) -> Result<i64, StorageError> {
        let resp = self.run(|c| async move { c.kv_client().delete(key, None).await }).await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// One etcd watch over a prefix from `start_revision`, with previous
    /// values so that deletions carry the object they deleted.
    pub async fn watch_prefix(&self, prefix: &str, start_revision: i64) -> Result<(Watcher, WatchStream), StorageError> {
        let end = prefix_end(prefix);
        self.run(|c| {
            // No `with_prev_key`: the watch cache holds every object, so the
            // previous state of a modified or deleted key is already in
            // memory. Asking etcd for it would cost a read per event on
            // etcd's side and double every event on the wire.
            let opts = WatchOptions::new()
                .with_range(end.clone())
                .with_start_revision(start_revision)
                .with_progress_notify();
            async move { c.watch_client().watch(prefix, Some(opts)).await }
        })
        .await
    }

    /// Compact history up to `revision` (tests use it to provoke 410 Gone).
    pub async fn compact(&self, revision: i64) -> Result<(), StorageError> {
        self.run(|c| async move { c.kv_client().compact(revision, None).await }).await?;
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
