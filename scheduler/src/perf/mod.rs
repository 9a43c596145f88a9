//! The scheduler benchmark, in the spirit of upstream's `scheduler_perf`
//! (`test/integration/scheduler_perf`): a **workload** (YAML under
//! `scheduler/workloads/`) says how many nodes and pods of which shape;
//! generators expand the templates; a runner schedules them and a
//! [`Report`] gives throughput (pods/s, average and percentiles over 1 s
//! windows) and scheduling latency percentiles.
//!
//! This module is the **in-process** mode: the same queue, cache (with
//! assume) and algorithm the real scheduler uses, on in-memory objects, no
//! API and no binding round trip — it measures the algorithm. The
//! **end-to-end** mode ([`e2e`]: etcd + apiserver + scheduler processes)
//! reuses [`Workload`], the generators and [`Report`].

pub mod report;
pub mod runner;
pub mod workload;

pub use report::{EtcdCeiling, ProcessCpu, Report, Stats};
pub use runner::{run_in_process, RunOptions};
pub use workload::{Workload, WorkloadError};
