//! rkube-controller: the controller manager (kube-controller-manager).
//!
//! One process runs many *control loops*. Each watches some kinds of
//! objects through shared informers, puts the keys of objects that need
//! attention into its own rate-limited work queue, and its workers
//! *reconcile* one key at a time: read the desired state (spec) and the
//! observed state (from the informer caches), and make one step of change
//! toward the desired state through the apiserver. Nothing is remembered
//! between syncs except caches and expectations, so a restarted (or newly
//! elected) controller manager simply carries on.
//!
//! - [`manager`]: starts the chosen controllers, leader election, /healthz
//!   and /metrics; [`options`]: the flags; [`context`]: what every
//!   controller is built from; [`informers`]: the shared informer factory;
//!   [`controller_utils`], [`expectations`]: shared helpers.
//! - One module per control loop: [`replicaset`], [`deployment`],
//!   [`endpoints`], [`garbagecollector`], [`namespace`], [`nodelifecycle`],
//!   [`nodeipam`], [`podgc`], [`serviceaccount`], [`resourcequota`].

pub mod context;
pub mod controller_utils;
pub mod deployment;
pub mod endpoints;
pub mod expectations;
pub mod garbagecollector;
pub mod informers;
pub mod manager;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod options;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
