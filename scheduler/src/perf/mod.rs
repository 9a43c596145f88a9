//! The scheduler benchmark, in the spirit of upstream's `scheduler_perf`
//! (`test/integration/scheduler_perf`): a **workload** (YAML under
//! `scheduler/workloads/`) says how many nodes and pods of which shape;
//! generators expand the templates; a runner schedules them and a
//! [`Report`] gives throughput (pods/s: the average over the measured time,
//! and percentiles over full 1 s windows when there are enough of them),
//! scheduling latency percentiles, and the headline [`Figure`]s.
//!
//! This module is the **in-process** mode: the same queue, cache (with
//! assume) and algorithm the real scheduler uses, on in-memory objects, no
//! API and no binding round trip — it measures the algorithm, repeating
//! the workload on fresh state until enough measured time adds up. The
//! **end-to-end** mode (`cli/src/commands/bench_scheduler_e2e.rs`: etcd,
//! apiserver and scheduler processes) reuses [`Workload`], the generators
//! and [`Report`].

pub mod report;
pub mod runner;
pub mod workload;

pub use report::{percentile_figures, Better, EtcdCeiling, Figure, PartialWindow, ProcessCpu, Repetitions, Report, Stats, Throughput};
pub use runner::{run_in_process, RunOptions};
pub use workload::{Workload, WorkloadError};
