//! The `scale` subresource (upstream `ScaleREST` of Deployments and
//! ReplicaSets): the autoscaling/v1 `Scale` view of a workload — what
//! `kubectl scale` and autoscalers read and write. Writing it changes the
//! workload's `spec.replicas`, nothing else. A PATCH is applied to the
//! current Scale and written as a PUT is (upstream's patch handler does the
//! same over `ScaleREST`'s Get and Update).

use serde_json::{json, Value};

use crate::registry::checks::WriteChecks;
use crate::registry::options::{forbid_force, FieldValidation, Query};
use crate::registry::output::Output;
use crate::registry::store::{Change, Registry, UpdateOptions};
use crate::registry::subresources::Subresource;
use crate::request::RequestInfo;
use crate::status::{ApiError, ApiResult, FieldError};

impl Registry {
    /// The Scale of the workload as etcd has it, and its revision.
    async fn get_scale(&self, ri: &RequestInfo) -> ApiResult<(Value, i64)> {
        let name = ri.name.as_deref().unwrap_or_default();
        let (obj, rev) = self.read(ri.resource, ri.namespace.as_deref(), name).await?;
        Ok((scale_of(&obj), rev))
    }

    pub async fn read_scale(&self, ri: &RequestInfo) -> ApiResult<Output> {
        Ok(Output::Object { code: 200, obj: self.get_scale(ri).await?.0, warnings: vec![] })
    }

    /// PUT of a Scale. Its query is checked as any update's.
    pub async fn update_scale<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, scale: Value, checks: &C) -> ApiResult<Output> {
        FieldValidation::from_query(q)?;
        self.write_scale(ri, q, scale, checks).await
    }

    /// PATCH of a Scale: applied to the current Scale, then written. A
    /// server-side apply goes to the store, as for any other part of an
    /// object.
    pub async fn patch_scale<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, content_type: &str, body: &[u8], checks: &C) -> ApiResult<Output> {
        if content_type.starts_with(crate::apply::CONTENT_TYPE) {
            return self.patch(ri, q, content_type, body, checks).await;
        }
        FieldValidation::from_query(q)?;
        forbid_force(q)?;
        let (scale, _) = self.get_scale(ri).await?;
        let patched = crate::patch::apply(content_type, &scale, body, "Scale")?;
        self.write_scale(ri, q, patched, checks).await
    }

    /// A Scale written (PUT, or a patch already applied to the current one).
    async fn write_scale<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, scale: Value, checks: &C) -> ApiResult<Output> {
        let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid("autoscaling", "Scale", ri.name.as_deref().unwrap_or(""), vec![FieldError::invalid(
                "spec.replicas",
                replicas.to_string(),
                "must be greater than or equal to 0",
            )]));
        }
        let pinned = scale["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        // Written as an update of the workload itself.
        let main = RequestInfo { subresource: None, ..ri.clone() };
        let compute = |old: &Value| {
            let mut n = old.clone();
            n["spec"]["replicas"] = json!(replicas);
            if let Some(p) = &pinned {
                n["metadata"]["resourceVersion"] = json!(p);
            }
            Ok(n)
        };
        let change = Change::Update { compute, opts: UpdateOptions::recorded(Subresource::Main) };
        let obj = self.guaranteed_update(&main, q, self.resource(ri.resource), checks, change).await?;
        Ok(Output::Object { code: 200, obj: scale_of(&obj), warnings: vec![] })
    }
}

/// The autoscaling/v1 Scale view of a Deployment or ReplicaSet.
fn scale_of(obj: &Value) -> Value {
    let sel = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{}={}", k, v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": sel},
    })
}
