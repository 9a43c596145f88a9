//! The registry: the REST storage behind every resource, cut as
//! Kubernetes' `pkg/registry` is — one generic store that knows no kind,
//! and one strategy per kind that says what create, update and delete mean
//! for it.
//!
//! - [`store`]: the generic store (upstream `genericregistry.Store`):
//!   create, get, update, patch, server-side apply, delete with graceful
//!   deletion, finalizers and propagation — updates and deletes through one
//!   GuaranteedUpdate loop. [`list`] and [`watch`] serve reads from the
//!   watch cache (or etcd, for pages).
//! - [`strategy`]: the `Strategy` trait (upstream's `RESTCreateStrategy`,
//!   `RESTUpdateStrategy`, `RESTGracefulDeleteStrategy` and store hooks) and
//!   the default strategy of the kinds with no rules of their own;
//!   [`kinds`]: the table of which strategy serves which resource.
//! - one file per kind with rules: [`pod`], [`service`], [`namespace`],
//!   [`node`], [`event`], [`secret`], [`configmap`], [`deployment`],
//!   [`replicaset`], [`role`], [`clusterrole`], [`rolebinding`],
//!   [`clusterrolebinding`].
//! - [`subresources`]: status, scale, binding, eviction,
//!   ephemeralcontainers, finalize — what a write through each may change,
//!   which the store applies; [`rest`]: the handlers of binding, eviction
//!   and scale, which take a body of their own and write through the store.
//! - [`checks`]: what the handler hands the store with a write (admission,
//!   the requester's RBAC checks), so the registry depends on neither.
//! - shared by the strategies: [`defaults`] (`SetDefaults_*`),
//!   [`validation`] (422 with causes), [`typed`] (decoding through the
//!   k8s-openapi types), [`fields`] (field selectors), [`meta`].
//! - [`allocator`] and [`repair`]: the Service ClusterIP and NodePort
//!   bitmaps in etcd and the loops that repair them; [`bootstrap`]: what
//!   the apiserver creates at start.

pub mod allocator;
pub mod bootstrap;
pub mod checks;
pub mod defaults;
pub mod fields;
pub mod kinds;
pub mod list;
pub mod meta;
pub mod options;
pub mod output;
pub mod repair;
pub mod rest;
pub mod store;
pub mod strategy;
pub mod subresources;
pub mod typed;
pub mod validation;
pub mod watch;
mod storage_form;

pub mod clusterrole;
pub mod clusterrolebinding;
pub mod configmap;
pub mod deployment;
pub mod event;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod replicaset;
pub mod role;
pub mod rolebinding;
pub mod secret;
pub mod service;

pub use options::{FieldValidation, Query};
pub use output::{Output, WatchEvent};
pub use store::{storage_error, Registry};
