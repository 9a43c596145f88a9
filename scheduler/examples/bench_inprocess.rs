//! In-process scheduler benchmark.
//!
//! ```text
//! cargo run --release -p rkube-scheduler --example bench_inprocess -- \
//!     [--window-ms 1000] [--out-dir DIR] scheduler/workloads/scheduling_basic.yaml [more.yaml ...]
//! ```
//!
//! Prints a table per workload and writes `<name>.json` and `<name>.svg`
//! into the output directory (default: current directory).

use std::path::PathBuf;
use std::time::Duration;

use rkube_scheduler::perf::{run_in_process, RunOptions, Workload};

fn main() -> anyhow::Result<()> {
    let mut window = Duration::from_secs(1);
    let mut out_dir = PathBuf::from(".");
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--window-ms" => window = Duration::from_millis(args.next().unwrap_or_default().parse()?),
            "--out-dir" => out_dir = PathBuf::from(args.next().unwrap_or_default()),
            "-h" | "--help" => {
                eprintln!("usage: bench_inprocess [--window-ms N] [--out-dir DIR] WORKLOAD.yaml...");
                return Ok(());
            }
            _ => files.push(PathBuf::from(a)),
        }
    }
    if files.is_empty() {
        anyhow::bail!("usage: bench_inprocess [--window-ms N] [--out-dir DIR] WORKLOAD.yaml...");
    }
    std::fs::create_dir_all(&out_dir)?;
    for f in files {
        let w = Workload::load(&f)?;
        let report = run_in_process(&w, &RunOptions { window, config: None })?;
        println!("{}", report.render_table());
        let base = out_dir.join(w.name.to_lowercase());
        report.write_json(&base.with_extension("json"))?;
        report.write_svg(&base.with_extension("svg"))?;
    }
    Ok(())
}
