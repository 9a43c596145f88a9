//! Watches (upstream `Store.Watch` over the cacher): events from the
//! resource's watch cache, from a resourceVersion on, filtered by label and
//! field selectors, with bookmarks and a bounded lifetime.

use std::time::Duration;

use tokio::sync::mpsc;

use super::list::filter;
use super::options::Query;
use super::output::{Output, WatchEvent};
use super::store::Registry;
use crate::request::RequestInfo;
use crate::status::{ApiError, ApiResult};
use crate::storage::cache::{CacheEvent, CachedObject, EventType};

impl Registry {
    pub async fn watch(&self, ri: &RequestInfo, q: &Query) -> ApiResult<Output> {
        let r = ri.resource;
        if q.get("sendInitialEvents").is_some() {
            return Err(ApiError::bad_request(
                "sendInitialEvents is not supported by rkube-apiserver; list, then watch from the list's resourceVersion",
            ));
        }
        let res = self.resource(r);
        let filter = filter(&*res.strategy, q)?;
        let mut ns = ri.namespace.clone();
        // A watch on one object (`/watch/namespaces/x/pods/name`) is a watch
        // with a name field selector.
        let name = ri.name.clone();
        let from = match q.get("resourceVersion").filter(|s| !s.is_empty()) {
            None | Some("0") => None,
            Some(v) => Some(v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}")))?),
        };
        let timeout = match q.get("timeoutSeconds") {
            Some(t) => Duration::from_secs(t.parse().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?),
            // Upstream spreads watch lifetimes over [30m, 60m].
            None => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
        };
        let bookmarks = q.flag("allowWatchBookmarks");
        let cache = res.cache.clone();
        if let Some(v) = from {
            if v > cache.current_rv() {
                cache.wait_for(v, Duration::from_secs(3)).await?;
            }
        }
        let full_filter = move |o: &CachedObject| name.as_ref().is_none_or(|n| &o.name == n) && filter(o);
        let (tx, rx) = mpsc::channel(256);
        let (replay, mut live, start_rv) = match cache.watch(from, ns.as_deref(), &full_filter) {
            Ok(w) => w,
            // As upstream: a watch that cannot start from the requested
            // revision is a 200 stream carrying one ERROR event (410 Expired).
            Err(e) if e.code == 410 => {
                let _ = tx.try_send(WatchEvent::Error(e));
                return Ok(Output::Watch(rx));
            }
            Err(e) => return Err(e),
        };
        let ns = ns.take();
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut last_rv = start_rv;
            for ev in replay {
                last_rv = last_rv.max(ev.object.rv);
                // The initial state is already filtered; replayed history
                // goes through the same transitions as live events.
                let out = if from.is_none() {
                    Some(WatchEvent::Event(ev.kind, ev.object.clone()))
                } else {
                    filter_event(&ev, ns.as_deref(), &full_filter)
                };
                if let Some(out) = out {
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
            }
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        let rv = cache.current_rv().max(last_rv);
                        if tx.send(WatchEvent::Bookmark(rv)).await.is_err() { return; }
                    }
                    ev = live.recv() => {
                        let ev = match ev {
                            Ok(ev) => ev,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                // Too slow: end the watch; the client resumes from its last rv.
                                return;
                            }
                            Err(_) => return,
                        };
                        if ev.object.rv <= last_rv && from.is_some() && ev.object.rv <= start_rv {
                            continue;
                        }
                        last_rv = last_rv.max(ev.object.rv);
                        if let Some(out) = filter_event(&ev, ns.as_deref(), &full_filter) {
                            if tx.send(out).await.is_err() { return; }
                        }
                    }
                }
            }
        });
        Ok(Output::Watch(rx))
    }
}

/// Decides whether a watch event is delivered, and as what: a selector-
/// filtered watch turns "stopped matching" into DELETED and "started
/// matching" into ADDED, as upstream's cacher does.
fn filter_event(ev: &CacheEvent, ns: Option<&str>, filter: &dyn Fn(&CachedObject) -> bool) -> Option<WatchEvent> {
    if let Some(ns) = ns {
        if !ev.object.namespace.is_empty() && ev.object.namespace != ns {
            return None;
        }
    }
    let now = filter(&ev.object);
    let before = ev.prev.as_ref().is_some_and(|p| filter(p));
    match ev.kind {
        EventType::Added if now => Some(WatchEvent::Event(EventType::Added, ev.object.clone())),
        EventType::Deleted if before || now => Some(WatchEvent::Event(EventType::Deleted, ev.object.clone())),
        EventType::Modified => match (before, now) {
            (true, true) => Some(WatchEvent::Event(EventType::Modified, ev.object.clone())),
            (false, true) => Some(WatchEvent::Event(EventType::Added, ev.object.clone())),
            (true, false) => Some(WatchEvent::Event(EventType::Deleted, ev.object.clone())),
            (false, false) => None,
        },
        _ => None,
    }
}
