//! `rkube bench <component>`.
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// The apiserver against a real etcd: raw etcd puts/s vs pod creates/s,
    /// LIST of many pods, watch fan-out latency, resident memory.
    Apiserver(super::bench_apiserver::Options),
}

pub fn run(b: Bench) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match b {
        Bench::Apiserver(o) => rt.block_on(super::bench_apiserver::run(o)),
    }
}
