//! rkube-proxy: the service proxy, kube-proxy's iptables mode.
//!
//! A Service is a virtual IP:port with no process behind it. The proxy makes
//! it real on each node by writing NAT rules: a packet to the cluster IP is
//! rewritten (DNAT) to one of the Service's endpoints, chosen at random.
//!
//! Modules, in the order data flows through them:
//! - [`model`]: Service + Endpoints → the service ports the proxy serves.
//! - [`chain_names`]: the per-service chain names (`KUBE-SVC-<hash>`, …).
//! - [`rules`]: service ports → `iptables-restore` text (pure, no IO).
//! - [`iptables`]: runs `iptables-restore --noflush` / `iptables-save`.
//! - [`proxier`]: the sync loop: change tracking, batching, full and partial
//!   syncs, retries, metrics.
//! - [`conntrack`]: flushes stale UDP conntrack entries.
//! - [`route`]: keeps the service CIDR on the machine (route to a local
//!   port-less bridge) and sets `route_localnet` for NodePorts on 127.0.0.1.
//! - [`server`]: `/healthz` and `/metrics`.
//! - [`options`]: the command line, named as kube-proxy's flags.
//! - [`run`]: the process: informers for Services and Endpoints feeding
//!   the proxier; `--dry-run` prints the rules instead.
//! - [`netns`]: network namespaces for tests and benchmarks.
//! - [`perf`]: the benchmark.

pub mod model;
pub mod chain_names;
pub mod rules;
pub mod iptables;
pub mod conntrack;
pub mod proxier;
pub mod route;
pub mod server;
pub mod options;
pub mod run;
pub mod netns;
pub mod perf;
