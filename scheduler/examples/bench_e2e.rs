//! End-to-end scheduler benchmark: etcd + rkube-apiserver + rkube-scheduler
//! processes, simulated nodes, pods created through the API.
//!
//! ```text
//! cargo build --release -p rkube-apiserver -p rkube-scheduler --bins
//! cargo run --release -p rkube-scheduler --example bench_e2e -- \
//!     [--window-ms 1000] [--out-dir DIR] [--concurrency 64] [--etcd etcd] \
//!     [--apiserver PATH] [--scheduler PATH] [--work-dir DIR] \
//!     scheduler/workloads/scheduling_basic.yaml [more.yaml ...]
//! ```
//!
//! Binaries default to the ones next to this example
//! (`target/release/rkube-apiserver`, `target/release/rkube-scheduler`) and
//! `etcd` on the PATH. Prints a table per workload and writes
//! `<name>-e2e.json` and `<name>-e2e.svg` into the output directory.

use std::path::PathBuf;
use std::time::Duration;

use rkube_scheduler::perf::e2e::sibling_binary;
use rkube_scheduler::perf::{run_end_to_end, E2eOptions, Workload};

const USAGE: &str = "usage: bench_e2e [--window-ms N] [--out-dir DIR] [--concurrency N] [--etcd PATH] \
[--apiserver PATH] [--scheduler PATH] [--work-dir DIR] [--idle-timeout-ms N] WORKLOAD.yaml...";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut opts = E2eOptions {
        apiserver_bin: sibling_binary("rkube-apiserver"),
        scheduler_bin: sibling_binary("rkube-scheduler"),
        ..Default::default()
    };
    let mut out_dir = PathBuf::from(".");
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--window-ms" => opts.window = Duration::from_millis(val()?.parse()?),
            "--idle-timeout-ms" => opts.idle_timeout = Duration::from_millis(val()?.parse()?),
            "--out-dir" => out_dir = PathBuf::from(val()?),
            "--concurrency" => opts.concurrency = val()?.parse()?,
            "--etcd" => opts.etcd_bin = PathBuf::from(val()?),
            "--apiserver" => opts.apiserver_bin = PathBuf::from(val()?),
            "--scheduler" => opts.scheduler_bin = PathBuf::from(val()?),
            "--work-dir" => opts.work_dir = Some(PathBuf::from(val()?)),
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            _ => files.push(PathBuf::from(a)),
        }
    }
    if files.is_empty() {
        anyhow::bail!("{USAGE}");
    }
    std::fs::create_dir_all(&out_dir)?;
    for f in files {
        let w = Workload::load(&f)?;
        let report = run_end_to_end(&w, &opts).await?;
        println!("{}", report.render_table());
        let base = out_dir.join(format!("{}-e2e", w.name.to_lowercase()));
        report.write_json(&base.with_extension("json"))?;
        report.write_svg(&base.with_extension("svg"))?;
    }
    Ok(())
}
