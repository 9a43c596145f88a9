//! rkube-scheduler: assigns pending pods to nodes.
//!
//! The library is the *algorithm*, pure and synchronous, in modules named
//! as the textbook names the pieces:
//!
//! * [`node_info`] — what is known about a node (allocatable, requested,
//!   pods, ports, images) and a pod's effective request;
//! * [`cache`] — the scheduler cache (with *assumed* pods) and the
//!   per-cycle [`cache::Snapshot`];
//! * [`anti_affinity_index`] — the snapshot's required anti-affinity counts
//!   per distinct term, so PreFilter does not scan the cluster;
//! * [`queue`] — the scheduling queue (activeQ, backoffQ, unschedulable pods);
//! * [`node_selector`] — a pod's `nodeSelector` and node affinity terms,
//!   compiled once and matched against nodes;
//! * [`predicates`] — phase 1, *filter*: can this node take the pod?
//! * [`priorities`] — phase 2, *score*: how good is this node?
//! * [`select_host`] — phase 3: pick the best, ties round-robin;
//! * [`algorithm`] — one scheduling cycle tying the phases together;
//! * [`framework`] — reasons, cycle state, `FitError` and its message;
//! * [`config`] — the YAML configuration;
//! * [`perf`] — workloads, the in-process and the end-to-end benchmarks.
//!
//! And the component on the API:
//!
//! * [`scheduler`] — informers → queue → cycle → assume → async bind,
//!   events, the PodScheduled condition, leader election;
//! * [`options`] — kube-scheduler's flags;
//! * [`metrics`], [`server`] — Prometheus metrics, `/healthz`, `/metrics`.
//!
//! The scheduling loop built on it ([`scheduler`] does this with the API side):
//!
//! ```text
//! loop {
//!     let qp = queue.pop()?;                       // highest priority first
//!     cache.update_snapshot(&mut snapshot);        // O(changed nodes)
//!     match algo.schedule(&qp.info, &snapshot) {
//!         Ok(r) => {
//!             cache.assume_pod(qp.info.clone(), &r.suggested_host)?;
//!             queue.done(&key);
//!             spawn(bind(pod, r.suggested_host));   // on failure: cache.forget_pod + queue.add_backoff
//!         }                                        // on success: cache.finish_binding
//!         Err(e) => { event FailedScheduling e.to_string(); condition PodScheduled=False
//!                     reason Unschedulable; queue.add_unschedulable(qp) }
//!     }
//! }
//! ```

pub mod algorithm;
pub mod anti_affinity_index;
pub mod cache;
pub mod config;
pub mod framework;
pub mod node_info;
pub mod node_selector;
pub mod perf;
pub mod predicates;
pub mod priorities;
pub mod queue;
pub mod select_host;

pub mod metrics;
pub mod options;
pub mod scheduler;
pub mod server;

pub use algorithm::{GenericScheduler, ScheduleResult};
pub use cache::{Cache, Snapshot};
pub use config::SchedulerConfig;
pub use framework::{FitError, Reason, ScheduleError};
pub use node_info::{NodeInfo, PodInfo};
pub use queue::{ClusterEvent, SchedulingQueue};
