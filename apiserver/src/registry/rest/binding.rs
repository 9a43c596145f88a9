//! `POST pods/<name>/binding` (upstream `BindingREST`): the scheduler's one
//! write per pod. It sets `spec.nodeName` — which no other write may — once,
//! and records PodScheduled=True.

use serde_json::{json, Value};

use crate::registry::checks::WriteChecks;
use crate::registry::meta::{is_deleting, set_condition};
use crate::registry::options::Query;
use crate::registry::output::Output;
use crate::registry::store::{Change, Registry, UpdateOptions};
use crate::registry::subresources::Subresource;
use crate::registry::typed;
use crate::request::RequestInfo;
use crate::status::{ApiError, ApiResult, FieldError};

impl Registry {
    pub async fn bind<C: WriteChecks>(&self, ri: &RequestInfo, q: &Query, binding: Value, checks: &C) -> ApiResult<Output> {
        let name = ri.name.clone().unwrap_or_default();
        let normalized = typed::normalize("Binding", &binding)
            .map_err(|e| ApiError::bad_request(format!("Binding in version \"v1\" cannot be handled as a Binding: {e}")))?;
        let node = normalized["target"]["name"].as_str().unwrap_or("").to_string();
        if node.is_empty() {
            return Err(ApiError::invalid("", "Binding", &name, vec![FieldError::required("target.name")]));
        }
        let compute = |old: &Value| {
            if is_deleting(old) {
                return Err(ApiError::conflict("", "pods", &name, "pod is being deleted, cannot be assigned to a host"));
            }
            if let Some(cur) = old["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
                return Err(ApiError::conflict("", "pods/binding", &name, &format!("pod {name} is already assigned to node \"{cur}\"")));
            }
            let mut n = old.clone();
            n["spec"]["nodeName"] = json!(node);
            set_condition(&mut n, "PodScheduled", "True", None, None);
            Ok(n)
        };
        // Written through the pod, as the binding subresource: the pod
        // strategy lets this one write set spec.nodeName.
        let change = Change::Update { compute, opts: UpdateOptions::recorded(Subresource::Binding) };
        self.guaranteed_update(ri, q, self.resource(ri.resource), checks, change).await?;
        Ok(Output::Object {
            code: 201,
            obj: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            warnings: vec![],
        })
    }
}
