//! Lists (upstream `Store.List` over the cacher and etcd3 store): label and
//! field selectors, served from the watch cache — consistent reads wait for
//! it to catch up with etcd — or, for paginated and exact-revision lists,
//! read from etcd at a fixed revision with `continue` tokens.

use std::sync::Arc;
use std::time::Duration;

use machinery::resources::{self, ResourceInfo};
use machinery::selector::{FieldSelector, Selector};
use serde_json::{json, Value};

use super::fields;
use super::options::Query;
use super::output::Output;
use super::store::{storage_error, Registry};
use super::strategy::Strategy;
use crate::request::RequestInfo;
use crate::status::{ApiError, ApiResult};
use crate::storage::cache::CachedObject;
use crate::storage::etcd::StorageError;

/// Which objects a list or watch selects.
pub type Filter = Box<dyn Fn(&CachedObject) -> bool + Send + Sync>;

/// The filter for the request's label and field selectors, refusing fields
/// the kind does not offer.
pub(super) fn filter(strategy: &dyn Strategy, q: &Query) -> ApiResult<Filter> {
    let labels = Selector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or("")).map_err(|e| ApiError::bad_request(e.0))?;
    fields::check_supported(strategy.selectable_fields(), &fields)?;
    Ok(Box::new(move |o: &CachedObject| {
        (labels.is_empty() || labels.matches_opt(o.labels().as_ref()))
            && (fields.is_empty()
                || fields.matches(|f| match f {
                    "metadata.name" => Some(o.name.clone()),
                    "metadata.namespace" => Some(o.namespace.clone()),
                    other => fields::get(&o.value, other),
                }))
    }))
}

impl Registry {
    pub async fn list(&self, ri: &RequestInfo, q: &Query) -> ApiResult<Output> {
        let r = ri.resource;
        let res = self.resource(r);
        let filter = filter(&*res.strategy, q)?;
        let ns = ri.namespace.as_deref();
        let limit: i64 = match q.get("limit") {
            None | Some("") => 0,
            Some(l) => l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        };
        let rv_param = q.get("resourceVersion").filter(|s| !s.is_empty());
        let exact = q.get("resourceVersionMatch") == Some("Exact");
        if let Some(m) = q.get("resourceVersionMatch") {
            if !matches!(m, "Exact" | "NotOlderThan") {
                return Err(ApiError::bad_request(format!("resourceVersionMatch: unsupported value {m:?}")));
            }
            if rv_param.is_none() {
                return Err(ApiError::bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided"));
            }
        }
        // Paginated and exact-revision lists read etcd at a fixed revision,
        // as upstream does; everything else is served from the watch cache.
        if let Some(token) = q.get("continue").filter(|s| !s.is_empty()) {
            if rv_param.is_some_and(|v| v != "0") {
                return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
            }
            let prefix = resources::collection_key(&self.prefix, r, ns);
            let (rev, start) = decode_continue(token, &prefix)?;
            return self.list_from_etcd(r, ns, Some(start), rev, limit, &*filter).await;
        }
        let requested_rv = match rv_param {
            Some(v) => Some(v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resource version {v:?}")))?),
            None => None,
        };
        if exact || (limit > 0 && requested_rv != Some(0)) {
            return self.list_from_etcd(r, ns, None, requested_rv.unwrap_or(0), limit, &*filter).await;
        }
        let cache = &res.cache;
        match requested_rv {
            // Consistent read: the cache must have caught up with etcd's current revision.
            None => {
                let now = self.etcd.current_revision().await.map_err(storage_error)?;
                cache.wait_for(now, Duration::from_secs(3)).await?;
            }
            Some(0) => {}
            Some(v) => cache.wait_for(v, Duration::from_secs(3)).await?,
        }
        let snap = cache.list(ns, &*filter);
        Ok(Output::List { rv: snap.rv, items: snap.items, continue_token: None })
    }

    async fn list_from_etcd(
        &self,
        r: &'static ResourceInfo,
        ns: Option<&str>,
        start: Option<String>,
        rev: i64,
        limit: i64,
        filter: &(dyn Fn(&CachedObject) -> bool + Send + Sync),
    ) -> ApiResult<Output> {
        let prefix = resources::collection_key(&self.prefix, r, ns);
        let mut start = start;
        let mut rev = rev;
        let mut items = Vec::new();
        loop {
            let (kvs, read_rev, more) = self
                .etcd
                .range(&prefix, start.as_deref(), rev, if limit > 0 { limit + 1 } else { 0 })
                .await
                .map_err(|e| match e {
                    StorageError::Compacted(_) => ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ),
                    other => storage_error(other),
                })?;
            if rev == 0 {
                rev = read_rev;
            }
            let n = kvs.len();
            for kv in kvs {
                if limit > 0 && items.len() as i64 == limit {
                    // There is at least this key left: continue from it.
                    let token = encode_continue(rev, &kv.key, &prefix);
                    return Ok(Output::List { rv: rev, items, continue_token: Some(token) });
                }
                if let Some(o) = CachedObject::from_stored(&kv.key, &kv.value, kv.mod_revision) {
                    if filter(&o) {
                        items.push(Arc::new(o));
                    }
                }
                start = Some(format!("{}\0", kv.key));
            }
            if !(more || (limit > 0 && n as i64 > limit)) || n == 0 {
                return Ok(Output::List { rv: rev, items, continue_token: None });
            }
        }
    }
}

/// The list `continue` token, as upstream's storage layer writes it: URL-safe
/// base64 (no padding) of `{"v","rv","start"}` where `start` is the next key
/// *relative to the collection prefix*. The prefix is never in the token, so
/// a client cannot point a list at another namespace's or resource's keys.
fn encode_continue(rev: i64, key: &str, prefix: &str) -> String {
    use base64::Engine;
    let start = key.strip_prefix(prefix).unwrap_or(key);
    let t = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t.to_string())
}

/// Decodes a `continue` token against the collection `prefix` being listed:
/// returns the revision and the absolute etcd key to resume from. The start
/// key must already be a clean relative path (no `.`/`..`/empty segments), so
/// `prefix + start` can never climb out of the collection; anything else is a
/// 400 "invalid continue token", the message upstream's etcd3 store gives.
fn decode_continue(token: &str, prefix: &str) -> ApiResult<(i64, String)> {
    use base64::Engine;
    let invalid = |why: String| ApiError::bad_request(format!("invalid continue token: continue key is not valid{why}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|e| invalid(format!(": {e}")))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| invalid(format!(": {e}")))?;
    let version = v["v"].as_str().unwrap_or_default();
    if version != "meta.k8s.io/v1" {
        return Err(invalid(format!(": server does not recognize this encoded version {version}")));
    }
    let rev = v["rv"].as_i64().unwrap_or(0);
    if rev == 0 {
        return Err(invalid(": incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into()));
    }
    let start = v["start"].as_str().unwrap_or_default();
    if start.is_empty() {
        return Err(invalid(": encoded start key empty (version meta.k8s.io/v1)".into()));
    }
    // The path.Clean check: "/" + start must already be a clean rooted path.
    let rooted = start.strip_prefix('/').unwrap_or(start);
    let clean = rooted.is_empty() || rooted.split('/').all(|seg| !matches!(seg, "" | "." | ".."));
    if !clean {
        return Err(invalid(format!(": {start}")));
    }
    Ok((rev, format!("{prefix}{rooted}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "/registry/pods/a/b", "/registry/pods/a/");
        assert_eq!(decode_continue(&t, "/registry/pods/a/").unwrap(), (42, "/registry/pods/a/b".to_string()));
        assert_eq!(decode_continue("garbage!", "/registry/pods/a/").unwrap_err().code, 400);
    }

    #[test]
    fn continue_tokens_stay_inside_the_collection() {
        use base64::Engine;
        let forge = |start: &str| {
            let t = json!({"v": "meta.k8s.io/v1", "rv": 5, "start": start}).to_string();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t)
        };
        let p = "/registry/pods/a/";
        for bad in ["../b/x", "./x", "x/../../secrets/y", "x//y", "x/"] {
            let e = decode_continue(&forge(bad), p).unwrap_err();
            assert_eq!((e.code, e.message.clone()), (400, format!("invalid continue token: continue key is not valid: {bad}")));
        }
        // An absolute key is taken relative to the prefix: it stays inside it.
        assert_eq!(decode_continue(&forge("/registry/secrets/b/x"), p).unwrap().1, "/registry/pods/a/registry/secrets/b/x");
        let e = decode_continue(&forge(""), p).unwrap_err();
        assert_eq!(e.message, "invalid continue token: continue key is not valid: encoded start key empty (version meta.k8s.io/v1)");
    }
}
