//! `POST pods/<name>/eviction` (a `policy/v1` Eviction; upstream
//! `EvictionREST`): the API-initiated eviction that `kubectl drain` uses.
//! Kubernetes first checks the PodDisruptionBudgets that cover the pod (429
//! TooManyRequests when one would be violated); rkube serves no
//! PodDisruptionBudgets, so nothing guards a pod and every eviction goes on
//! to be a graceful delete with the Eviction's `deleteOptions`. Answers 201
//! with a Success Status.

use serde_json::{json, Value};

use crate::registry::checks::WriteChecks;
use crate::registry::options::Query;
use crate::registry::output::Output;
use crate::registry::store::Registry;
use crate::request::{RequestInfo, Verb};
use crate::status::{ApiError, ApiResult};

impl Registry {
    pub async fn evict<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, eviction: Value, checks: &C) -> ApiResult<Output> {
        let name = ri.name.clone().unwrap_or_default();
        let api_version = eviction["apiVersion"].as_str().unwrap_or("");
        if eviction["kind"] != "Eviction" || !matches!(api_version, "policy/v1" | "policy/v1beta1") {
            return Err(ApiError::bad_request(format!(
                "not a Eviction object: {} {}",
                api_version,
                eviction["kind"].as_str().unwrap_or("")
            )));
        }
        if eviction["metadata"]["name"].as_str().unwrap_or("") != name {
            return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
        }
        if let Some(ns) = eviction["metadata"]["namespace"].as_str().filter(|n| !n.is_empty()) {
            if Some(ns) != ri.namespace.as_deref() {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
            }
        }
        let options = eviction.get("deleteOptions").filter(|o| o.is_object()).cloned();
        let pod = RequestInfo { verb: Verb::Delete, subresource: None, ..ri.clone() };
        self.delete(&pod, q, options, checks).await?;
        Ok(Output::Object {
            code: 201,
            obj: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            warnings: vec![],
        })
    }
}
