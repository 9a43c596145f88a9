//! rkube-machinery: what every rkube component shares.
//!
//! Layered as kube-rs is, sans-IO first:
//! - [`resources`]: the table of API resources (group, version, kind, plural,
//!   scope, short names) — the one place that says what the API serves.
//! - [`selector`]: label and field selectors, parsed and matched.
//! - [`quantity`]: resource quantities (`100m`, `1Gi`) as numbers.
//! - [`duration`]: Go duration strings (`300ms`, `1m30s`), the one parser
//!   of every component's duration flags.
//! - [`names`]: `generateName`-style names (prefix + random suffix).
//! - [`quota`]: what objects count against a ResourceQuota.
//! - [`qos`]: a pod's QoS class (Guaranteed, Burstable, BestEffort), the
//!   one computation the apiserver and the node agent share.
//! - [`routes`]: is an address on one of this machine's own networks (the
//!   guard before dialing a pod address; reads the route table in `/proc`).
//! - [`stats`]: the one percentile definition (nearest rank) and the
//!   median/min/max summary every benchmark reports.
//!
//! Then, behind the `client` feature (on by default), the IO half that
//! components use to talk to the apiserver — never to etcd:
//! - `client`: the API client, built from a kubeconfig or `--master`.
//! - `informer`: list + watch + local cache (client-go's shared informer).
//! - `workqueue`: rate-limited, de-duplicating work queue.
//! - `leader_election`: a coordination.k8s.io Lease based leader lock.
//! - `events`: the event recorder.
//! - `health_server`: the HTTP server of a component's health checks
//!   (`/healthz`, `/livez`, `/readyz`) and `/metrics`.
//! - `netns` (Linux): run a closure or a thread inside a named network
//!   namespace (`/run/netns/<name>`).

pub mod resources;
pub mod selector;
pub mod quantity;
pub mod duration;
pub mod names;
pub mod quota;
pub mod qos;
pub mod routes;
pub mod stats;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod workqueue;
#[cfg(feature = "client")]
pub mod informer;
#[cfg(feature = "client")]
pub mod leader_election;
#[cfg(feature = "client")]
pub mod events;
#[cfg(feature = "client")]
pub mod health_server;
#[cfg(all(feature = "client", target_os = "linux"))]
pub mod netns;
