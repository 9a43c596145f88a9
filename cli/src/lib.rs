//! The `rkube` command: the single-box launcher and the benchmarks. One
//! short module per subcommand under `commands/`, as youki lays its CLI out.

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
    /// Bring up a single-box cluster (not implemented yet).
    Up,
    /// Stop the single-box cluster (not implemented yet).
    Down,
    /// Show the single-box cluster's components (not implemented yet).
    Status,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bench(b) => commands::bench::run(b),
        Command::Certs(o) => commands::certs::run(o),
        Command::Up | Command::Down | Command::Status => {
            anyhow::bail!("not implemented yet: the single-box launcher comes with its own issue")
        }
    }
}
