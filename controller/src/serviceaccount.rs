//! The serviceaccount controller (upstream `pkg/controller/serviceaccount`,
//! `ServiceAccountsController`): every Active namespace has a ServiceAccount
//! named `default`.
//!
//! A pod that names no ServiceAccount runs as `default`, and the apiserver's
//! ServiceAccount admission plugin refuses pods whose account does not
//! exist; this loop is what makes `kubectl create namespace x; kubectl run
//! -n x …` work. The work queue holds namespace names:
//! - a namespace added or updated (including informer resyncs) queues it;
//! - a ServiceAccount deleted queues its namespace, so a deleted `default`
//!   comes back.
//!
//! `sync` reads the namespace from the informer cache: gone, or not
//! `Active` (Terminating) → nothing to do — a namespace being emptied must
//! not get new content. Otherwise each account to ensure that the cache
//! does not have is created; `AlreadyExists` (the cache lagging a create)
//! and the apiserver's "namespace is being terminated" refusal (the
//! namespace started terminating after the cache read) are not errors.
//! Other failures are retried with the queue's backoff.

use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use machinery::informer::{HandlerFns, Store};
use machinery::workqueue::WorkQueue;

use crate::context::Context;
use crate::controller_utils::*;

/// The accounts every namespace gets (upstream
/// `DefaultServiceAccountsControllerOptions`: just `default`).
pub const ACCOUNTS_TO_ENSURE: &[&str] = &["default"];

pub struct ServiceAccountsController {
    client: Client,
    ns_store: Store<Namespace>,
    sa_store: Store<ServiceAccount>,
    pub queue: WorkQueue<String>,
}

/// The accounts of `ensure` to create in namespace `ns`: none unless it
/// exists and is Active; otherwise those `exists` does not know.
pub fn accounts_to_create<'a>(ns: Option<&Namespace>, exists: impl Fn(&str) -> bool, ensure: &[&'a str]) -> Vec<&'a str> {
    let Some(ns) = ns else { return Vec::new() };
    // Upstream: `if ns.Status.Phase != v1.NamespaceActive { return nil }`.
    if ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Active") {
        return Vec::new();
    }
    ensure.iter().copied().filter(|n| !exists(n)).collect()
}

impl ServiceAccountsController {
    pub fn new(ctx: &Context) -> Arc<Self> {
        let ns_inf = ctx.informers.namespaces();
        let sa_inf = ctx.informers.service_accounts();
        let queue = ctx.queue("serviceaccount");
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        ns_inf.add_event_handler(
            HandlerFns::new()
                .on_add(move |n: &Arc<Namespace>| q1.add(name(&n.metadata).to_string()))
                .on_update(move |_, n: &Arc<Namespace>| q2.add(name(&n.metadata).to_string())),
        );
        sa_inf.add_event_handler(HandlerFns::new().on_delete(move |sa: &Arc<ServiceAccount>| q3.add(ns(&sa.metadata).to_string())));
        Arc::new(ServiceAccountsController { client: ctx.client.clone(), ns_store: ns_inf.store(), sa_store: sa_inf.store(), queue })
    }

    pub async fn run(self: Arc<Self>, workers: usize, gate: Gate) {
        let c = self.clone();
        run_workers("serviceaccount", self.queue.clone(), workers, gate, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    }

    /// Upstream `syncNamespace`.
    pub async fn sync(&self, ns_name: &str) -> anyhow::Result<()> {
        let n = self.ns_store.get(ns_name);
        let missing = accounts_to_create(n.as_deref(), |sa| self.sa_store.get_named(Some(ns_name), sa).is_some(), ACCOUNTS_TO_ENSURE);
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns_name);
        for sa_name in missing {
            let mut sa = ServiceAccount::default();
            sa.metadata.name = Some(sa_name.to_string());
            sa.metadata.namespace = Some(ns_name.to_string());
            match api.create(&PostParams::default(), &sa).await {
                Ok(_) => tracing::info!(namespace = ns_name, name = sa_name, "created service account"),
                Err(e) if is_already_exists(&e) || is_namespace_terminating(&e) => {}
                Err(e) => return Err(e).with_context(|| format!("creating service account {ns_name}/{sa_name}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A namespace described as "phase" ("-" for none), or no namespace at
    /// all; `existing`: the accounts the cache has.
    fn check(ns: Option<&str>, existing: &[&str], expect: &[&str]) {
        let ns: Option<Namespace> = ns.map(|phase| {
            let mut v = json!({"metadata": {"name": "dev"}});
            if phase != "-" {
                v["status"] = json!({"phase": phase});
            }
            serde_json::from_value(v).unwrap()
        });
        let got = accounts_to_create(ns.as_ref(), |n| existing.contains(&n), ACCOUNTS_TO_ENSURE);
        assert_eq!(got, expect, "namespace {ns:?}, existing {existing:?}");
    }

    #[test]
    fn every_active_namespace_gets_default() {
        check(Some("Active"), &[], &["default"]);
        check(Some("Active"), &["builder"], &["default"]);
        check(Some("Active"), &["default"], &[]);
        // Terminating (or phase-less) namespaces get nothing new, as upstream.
        check(Some("Terminating"), &[], &[]);
        check(Some("-"), &[], &[]);
        // A namespace gone from the cache: nothing to do.
        check(None, &[], &[]);
    }

    #[test]
    fn several_accounts_to_ensure() {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "dev"}, "status": {"phase": "Active"}})).unwrap();
        let got = accounts_to_create(Some(&ns), |n| n == "b", &["a", "b", "c"]);
        assert_eq!(got, ["a", "c"]);
    }
}
