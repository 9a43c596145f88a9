//! The `rkube` command: the single-box launcher and the benchmarks. One
//! short module per subcommand under `commands/`, as youki lays its CLI out.

pub mod bench_env;
pub mod cluster;
pub mod commands;
pub mod procs;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "rkube", version, about = "rkube: the core of Kubernetes in Rust — launcher and benchmarks.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a benchmark and report its figures.
    #[command(subcommand)]
    Bench(commands::bench::Bench),
    /// Make the cluster CA, component certificates and kubeconfigs.
    Certs(commands::certs::Options),
    /// Bring up a single-box cluster: control plane plus nodes in network namespaces, and a demo app.
    Up(commands::up::Options),
    /// Stop the single-box cluster and remove what it created.
    Down(commands::down::Options),
    /// Show the single-box cluster's components, their health and the nodes.
    Status(commands::status::Options),
    /// Print one component's log.
    Logs(commands::logs::Options),
    /// Soak an `rkube up --ha` cluster: a workload while control-plane processes are killed and paused; then check invariants.
    Chaos(commands::chaos::Options),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench(b) => commands::bench::run(b),
        Command::Certs(o) => commands::certs::run(o),
        Command::Up(o) => commands::up::run(o),
        Command::Down(o) => commands::down::run(o),
        Command::Status(o) => commands::status::run(o),
        Command::Logs(o) => commands::logs::run(o),
        Command::Chaos(o) => commands::chaos::run(o),
    }
}
