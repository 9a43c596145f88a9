//! `rkube bench <component>`.
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// The apiserver against a real etcd: raw etcd puts/s vs pod creates/s,
    /// LIST of many pods, watch fan-out latency, resident memory.
    Apiserver(super::bench_apiserver::Options),
    /// The scheduler: throughput and latency on a workload file, end to end
    /// or in-process, with the raw etcd ceiling measured in the same run.
    Scheduler(super::bench_scheduler::Options),
    /// The proxy: sync times vs raw iptables-restore, endpoint-change latency (root).
    Proxy(super::bench_proxy::Options),
}

pub fn run(b: Bench) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match b {
        Bench::Apiserver(o) => rt.block_on(super::bench_apiserver::run(o)),
        Bench::Scheduler(o) => rt.block_on(super::bench_scheduler::run(o)),
        Bench::Proxy(o) => super::bench_proxy::run(o),
    }
}
