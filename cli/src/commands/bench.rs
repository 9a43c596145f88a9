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
    /// The node agent (root): pod startup through a Deployment on a real
    /// containerd node, and one agent process keeping thousands of simulated nodes Ready.
    Agent(super::bench_agent::Options),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

pub fn run(b: Bench) -> anyhow::Result<()> {
    match b {
        Bench::Apiserver(o) => runtime()?.block_on(super::bench_apiserver::run(o)),
        Bench::Scheduler(o) => runtime()?.block_on(super::bench_scheduler::run(o)),
        Bench::Proxy(o) => super::bench_proxy::run(o),
        // Builds its own runtime, on a thread inside its network namespace.
        Bench::Agent(o) => super::bench_agent::run(o),
    }
}
