//! What the apiserver creates when it starts (upstream's bootstrap
//! controller and the RBAC post-start hook): the system namespaces, the
//! bootstrap policy (cluster roles and bindings), and the `kubernetes`
//! Service in `default`. Each is created if missing; one already there is
//! left as it is.

use machinery::resources;
use serde_json::json;

use super::checks::WriteChecks;
use super::namespace::SYSTEM_NAMESPACES;
use super::options::Query;
use super::store::Registry;
use crate::request::{RequestInfo, Verb};
use crate::status::ApiResult;

impl Registry {
    /// Creates the system namespaces, the bootstrap policy and the
    /// `kubernetes` service if missing.
    pub async fn bootstrap<C: WriteChecks>(&self, checks: &C) -> ApiResult<()> {
        let nsr = resources::find("", "v1", "namespaces").unwrap();
        let q = Query::default();
        for ns in SYSTEM_NAMESPACES {
            let ri = RequestInfo { verb: Verb::Create, resource: nsr, namespace: None, name: None, subresource: None };
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match self.create(&ri, &q, obj, checks).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        // The bootstrap policy: cluster roles and bindings Kubernetes starts with.
        for obj in crate::auth::bootstrap::all() {
            let kind = obj["kind"].as_str().unwrap_or("");
            let Some(r) = resources::find_kind("rbac.authorization.k8s.io", kind) else { continue };
            let ri = RequestInfo { verb: Verb::Create, resource: r, namespace: None, name: None, subresource: None };
            match self.create(&ri, &q, obj, checks).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        let svc = resources::find("", "v1", "services").unwrap();
        let ri = RequestInfo { verb: Verb::Create, resource: svc, namespace: Some("default".into()), name: None, subresource: None };
        let obj = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": self.ips.first().to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}});
        match self.create(&ri, &q, obj, checks).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) if e.code == 422 => Ok(()), // address taken by an older incarnation
            Err(e) => Err(e),
        }
    }
}
