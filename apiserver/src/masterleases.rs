//! Master leases: how the `kubernetes` Service in `default` lists exactly
//! the apiservers that are alive — kube-apiserver's "lease" endpoint
//! reconciler (`--endpoint-reconciler-type=lease`, the default since 1.11).
//!
//! Each apiserver keeps one key, `<prefix>/masterleases/<advertise-address>`,
//! holding a small `Endpoints` object with its address, attached to an etcd
//! lease with a TTL (15 s upstream). Every 2/3 of the TTL (10 s) it:
//!
//! 1. refreshes its own key (a new etcd lease), whatever happens next, so
//!    that at least the other apiservers will list it;
//! 2. lists every key under `masterleases/` — the apiservers whose keys have
//!    not expired;
//! 3. rewrites `default/kubernetes` Endpoints if they differ from that set:
//!    one subset, addresses sorted, the port named `https` = the secure port.
//!
//! An apiserver that dies stops refreshing; its key expires with its lease
//! and the next reconcile of any survivor prunes it. One that stops cleanly
//! (SIGTERM) deletes its key and reconciles at once ([`MasterLeases::remove`]).
//! An empty list is never written: we just refreshed our own key, so none
//! means storage is misbehaving, not that no apiserver is alive.
//!
//! The apiservers write the Endpoints through the registry (validated,
//! compare-and-swap, seen by every watch cache), never as raw etcd keys.

use std::sync::Arc;
use std::time::Duration;

use machinery::resources;
use serde_json::{json, Value};

use crate::registry::{Query, Registry};
use crate::request::{RequestInfo, Verb};
use crate::security::{Checks, Security};
use crate::status::ApiError;

/// Upstream's `DefaultEndpointReconcilerTTL`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

/// The `kubernetes` Service and its Endpoints live here.
const NAMESPACE: &str = "default";
const SERVICE: &str = "kubernetes";
/// Upstream marks these Endpoints so EndpointSlice mirroring skips them.
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

pub struct MasterLeases {
    registry: Arc<Registry>,
    /// Admission for the Endpoints writes (the apiserver's own: no requester).
    security: Arc<Security>,
    /// `<prefix>/masterleases/`
    base_key: String,
    ip: String,
    ttl: Duration,
    secure_port: u16,
    /// Serialises reconciles; `true` once [`Self::remove`] ran (upstream's
    /// `stopReconcilingCalled`): a stopping apiserver must not re-add itself.
    stopped: tokio::sync::Mutex<bool>,
}

impl MasterLeases {
    pub fn new(registry: Arc<Registry>, security: Arc<Security>, ip: &str, ttl: Duration, secure_port: u16) -> Arc<Self> {
        let base_key = format!("{}/masterleases/", registry.prefix);
        Arc::new(MasterLeases {
            registry,
            security,
            base_key,
            ip: ip.to_string(),
            ttl,
            secure_port,
            stopped: tokio::sync::Mutex::new(false),
        })
    }

    fn checks(&self) -> Checks<'_> {
        Checks::internal(&self.registry, &self.security)
    }

    /// How often to reconcile: 2/3 of the TTL, as upstream (10 s of 15 s).
    pub fn interval(&self) -> Duration {
        self.ttl * 2 / 3
    }

    /// Reconciles now and then every [`Self::interval`], forever.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.interval());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.reconcile().await {
                    tracing::warn!(ip = %me.ip, "reconciling the kubernetes service endpoints: {}", e.message);
                }
            }
        })
    }

    /// Refresh our lease, then make the Endpoints match the live set
    /// (upstream's `ReconcileEndpoints`).
    pub async fn reconcile(&self) -> Result<(), ApiError> {
        let stopped = self.stopped.lock().await;
        if *stopped {
            return Ok(());
        }
        self.update_lease().await?;
        self.ensure_service_port().await?;
        self.reconcile_endpoints().await
    }

    /// Drop our lease and reconcile at once, so clients stop being sent to
    /// an apiserver that is going away (upstream's `RemoveEndpoints`, run on
    /// shutdown). No reconcile happens after this one.
    pub async fn remove(&self) -> Result<(), ApiError> {
        let mut stopped = self.stopped.lock().await;
        *stopped = true;
        self.registry.etcd.delete_key(&self.key()).await.map_err(crate::registry::storage_error)?;
        self.reconcile_endpoints().await
    }

    fn key(&self) -> String {
        format!("{}{}", self.base_key, self.ip)
    }

    /// Our key: an Endpoints record naming our address, on a fresh etcd
    /// lease of `ttl` (upstream bumps `generation` so the write is never a
    /// no-op that would leave the TTL unrefreshed; a fresh lease does that here).
    async fn update_lease(&self) -> Result<(), ApiError> {
        let record = json!({
            "kind": "Endpoints",
            "apiVersion": "v1",
            "metadata": {"name": self.ip, "creationTimestamp": null},
            "subsets": [{"addresses": [{"ip": self.ip}]}],
        });
        self.registry
            .etcd
            .put_with_ttl(&self.key(), serde_json::to_vec(&record).expect("json"), self.ttl)
            .await
            .map_err(crate::registry::storage_error)?;
        Ok(())
    }

    /// The addresses of every apiserver whose lease has not expired
    /// (upstream's `ListLeases`: the first address of each record), sorted.
    pub async fn list_leases(&self) -> Result<Vec<String>, ApiError> {
        let (kvs, _, _) = self.registry.etcd.range(&self.base_key, None, 0, 0).await.map_err(crate::registry::storage_error)?;
        let mut ips: Vec<String> = kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .filter_map(|v| v["subsets"][0]["addresses"][0]["ip"].as_str().map(str::to_string))
            .filter(|ip| !ip.is_empty())
            .collect();
        ips.sort();
        ips.dedup();
        Ok(ips)
    }

    fn endpoint_ports(&self) -> Value {
        json!([{"name": "https", "port": self.secure_port, "protocol": "TCP"}])
    }

    /// Upstream's `doReconcile`.
    async fn reconcile_endpoints(&self) -> Result<(), ApiError> {
        let r = resources::find("", "v1", "endpoints").expect("endpoints are a resource");
        let current = match self.registry.read(r, Some(NAMESPACE), SERVICE).await {
            Ok((v, _)) => Some(v),
            Err(e) if e.code == 404 => None,
            Err(e) => return Err(e),
        };
        let ips = self.list_leases().await?;
        if ips.is_empty() {
            return Err(ApiError::internal(
                "no master IPs were listed in storage, refusing to erase all endpoints for the kubernetes service",
            ));
        }
        let ports = self.endpoint_ports();
        let want_subsets = json!([{
            "addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "ports": ports,
        }]);
        if let Some(cur) = &current {
            if endpoints_match(cur, &ips, &ports) && cur["metadata"]["labels"][SKIP_MIRROR] == "true" {
                return Ok(());
            }
        }
        tracing::info!(ips = ?ips, "resetting endpoints for master service \"kubernetes\"");
        let q = Query::default();
        let mut ri = RequestInfo {
            verb: Verb::Create,
            resource: r,
            namespace: Some(NAMESPACE.into()),
            name: None,
            subresource: None,
        };
        match current {
            None => {
                let obj = json!({
                    "apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": {SKIP_MIRROR: "true"}},
                    "subsets": want_subsets,
                });
                match self.registry.create(&ri, &q, obj, &self.checks()).await {
                    Ok(_) => Ok(()),
                    // Another apiserver made it first: the next round checks it.
                    Err(e) if e.code == 409 => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Some(mut obj) => {
                // Keep the read resourceVersion: a concurrent rewrite by
                // another apiserver makes this one fail with 409 (retried next round).
                obj["subsets"] = want_subsets;
                obj["metadata"]["labels"][SKIP_MIRROR] = json!("true");
                ri.verb = Verb::Update;
                ri.name = Some(SERVICE.into());
                self.registry.update(&ri, &q, obj, &self.checks()).await.map(|_| ())
            }
        }
    }

    /// The `kubernetes` Service forwards to the secure port (upstream's
    /// bootstrap controller creates it with `targetPort` = the secure port
    /// and reconciles that port on every start).
    async fn ensure_service_port(&self) -> Result<(), ApiError> {
        let r = resources::find("", "v1", "services").expect("services are a resource");
        let (mut svc, _) = match self.registry.read(r, Some(NAMESPACE), SERVICE).await {
            Ok(v) => v,
            // Made by `Registry::bootstrap`; if someone deleted it, a
            // restarted apiserver makes it again.
            Err(e) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        let port = &svc["spec"]["ports"][0];
        if port["name"] == "https" && port["port"] == 443 && port["targetPort"] == self.secure_port {
            return Ok(());
        }
        svc["spec"]["ports"] = json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.secure_port}]);
        let ri = RequestInfo {
            verb: Verb::Update,
            resource: r,
            namespace: Some(NAMESPACE.into()),
            name: Some(SERVICE.into()),
            subresource: None,
        };
        match self.registry.update(&ri, &Query::default(), svc, &self.checks()).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Upstream's `checkEndpointSubsetFormatWithLease`: one subset, exactly the
/// expected addresses (in any order, no duplicates), exactly the ports.
fn endpoints_match(ep: &Value, ips: &[String], ports: &Value) -> bool {
    let Some(subsets) = ep["subsets"].as_array() else { return false };
    if subsets.len() != 1 {
        return false;
    }
    let sub = &subsets[0];
    if !ports_equal(&sub["ports"], ports) {
        return false;
    }
    let mut have: Vec<&str> = sub["addresses"].as_array().map(|a| a.iter().filter_map(|x| x["ip"].as_str()).collect()).unwrap_or_default();
    have.sort_unstable();
    let before = have.len();
    have.dedup();
    before == have.len() && have == ips.iter().map(String::as_str).collect::<Vec<_>>()
}

/// Ports compared field by field, with the stored form's defaults
/// (protocol TCP) filled in.
fn ports_equal(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| -> Vec<(String, i64, String)> {
        v.as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap_or("").to_string(),
                            p["port"].as_i64().unwrap_or(0),
                            p["protocol"].as_str().unwrap_or("TCP").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(subsets: Value) -> Value {
        json!({"metadata": {"name": "kubernetes"}, "subsets": subsets})
    }

    #[test]
    fn endpoint_format_checks_match_upstream() {
        let ports = json!([{"name": "https", "port": 6443, "protocol": "TCP"}]);
        let ips = vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()];
        let good = ep(json!([{"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}], "ports": ports}]));
        assert!(endpoints_match(&good, &ips, &ports), "order does not matter");
        // A dead apiserver still listed, or a live one missing.
        let extra = ep(json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}], "ports": ports}]));
        assert!(!endpoints_match(&extra, &ips, &ports));
        let missing = ep(json!([{"addresses": [{"ip": "10.0.0.1"}], "ports": ports}]));
        assert!(!endpoints_match(&missing, &ips, &ports));
        // Duplicates are wrong even when the set is right.
        let dup = ep(json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": ports}]));
        assert!(!endpoints_match(&dup, &ips, &ports));
        // Wrong port, two subsets, none.
        let port = ep(json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "https", "port": 443}]}]));
        assert!(!endpoints_match(&port, &ips, &ports));
        let two = ep(json!([{"addresses": [{"ip": "10.0.0.1"}], "ports": ports}, {"addresses": [{"ip": "10.0.0.2"}], "ports": ports}]));
        assert!(!endpoints_match(&two, &ips, &ports));
        assert!(!endpoints_match(&ep(json!(null)), &ips, &ports));
        // The protocol defaults to TCP when stored without it.
        let no_proto = ep(json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "https", "port": 6443}]}]));
        assert!(endpoints_match(&no_proto, &ips, &ports));
    }
}
