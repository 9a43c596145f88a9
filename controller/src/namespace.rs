//! The namespace controller (upstream `pkg/controller/namespace`): empties a
//! namespace that is being deleted, then lets it go.
//!
//! `kubectl delete namespace x` only marks it (phase Terminating,
//! deletionTimestamp); the `kubernetes` entry in `spec.finalizers` keeps it.
//! This controller deletes every namespaced object in it — for each
//! namespaced resource in the API table, a DELETE of the collection with
//! background propagation — and, once a list shows nothing left, removes
//! its finalizer with `PUT /api/v1/namespaces/x/finalize`. The apiserver
//! then deletes the namespace. Objects that take time to go (pods on a
//! node shutting down, objects with finalizers) are waited for by
//! re-queueing the namespace a little later.
//!
//! Simplification: upstream also reports progress in `status.conditions`
//! (NamespaceContentRemaining, …); rkube logs it instead.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Api, Client};
use machinery::informer::{HandlerFns, Store};
use machinery::workqueue::WorkQueue;

use crate::context::Context;
use crate::controller_utils::*;

pub const FINALIZER: &str = "kubernetes";

pub struct NamespaceController {
    client: Client,
    store: Store<Namespace>,
    pub queue: WorkQueue<String>,
}

fn terminating(n: &Namespace) -> bool {
    is_deleting(&n.metadata) || n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

impl NamespaceController {
    pub fn new(ctx: &Context) -> Arc<Self> {
        let inf = ctx.informers.namespaces();
        let queue = ctx.queue("namespace");
        let (q1, q2) = (queue.clone(), queue.clone());
        inf.add_event_handler(
            HandlerFns::new()
                .on_add(move |n: &Arc<Namespace>| {
                    if terminating(n) {
                        q1.add(name(&n.metadata).to_string())
                    }
                })
                .on_update(move |_, n: &Arc<Namespace>| {
                    if terminating(n) {
                        q2.add(name(&n.metadata).to_string())
                    }
                }),
        );
        Arc::new(NamespaceController { client: ctx.client.clone(), store: inf.store(), queue })
    }

    pub async fn run(self: Arc<Self>, workers: usize, gate: Gate) {
        let c = self.clone();
        run_workers("namespace", self.queue.clone(), workers, gate, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    }

    pub async fn sync(&self, ns_name: &str) -> anyhow::Result<()> {
        let Some(n) = self.store.get(ns_name) else { return Ok(()) };
        if !terminating(&n) {
            return Ok(());
        }
        let finalizers = n.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(()); // our part is done; someone else's finalizer remains
        }
        let remaining = self.delete_all_content(ns_name).await?;
        if remaining > 0 {
            tracing::info!(namespace = ns_name, remaining, "namespace content remaining, checking again");
            self.queue.add_after(ns_name.to_string(), Duration::from_secs(1));
            return Ok(());
        }
        // Empty: finalize.
        let mut fin = (*n).clone();
        fin.spec.get_or_insert_with(Default::default).finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.replace_subresource("finalize", ns_name, &PostParams::default(), serde_json::to_vec(&fin)?).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e).context("finalizing namespace"),
        }
    }

    /// Deletes everything in the namespace; returns how many objects are
    /// still there afterwards.
    async fn delete_all_content(&self, ns_name: &str) -> anyhow::Result<usize> {
        let mut remaining = 0;
        for r in machinery::resources::RESOURCES.iter().filter(|r| r.namespaced) {
            let ar = ApiResource { group: r.group.into(), version: r.version.into(), api_version: r.api_version(), kind: r.kind.into(), plural: r.plural.into() };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns_name, &ar);
            let list = api.list(&ListParams::default()).await.with_context(|| format!("listing {}", r.plural))?;
            let live = list.items.iter().filter(|o| o.metadata.deletion_timestamp.is_none()).count();
            if live > 0 {
                api.delete_collection(&DeleteParams::background(), &ListParams::default()).await.with_context(|| format!("deleting {}", r.plural))?;
            }
            if !list.items.is_empty() {
                remaining += api.list(&ListParams::default()).await?.items.len();
            }
        }
        Ok(remaining)
    }
}
