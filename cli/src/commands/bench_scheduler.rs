//! `rkube bench scheduler`: the scheduler_perf of rkube. End to end (real
//! etcd + rkube-apiserver + rkube-scheduler processes, simulated nodes, pods
//! created through the API, the raw etcd transaction rate measured in the
//! same run) or in-process (the same algorithm on an in-memory snapshot).

use std::path::PathBuf;
use std::time::Duration;

use rkube_scheduler::perf::{run_in_process, RunOptions, Workload};

use super::bench_scheduler_e2e::{run_end_to_end, E2eOptions};

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Workload files (scheduler/workloads/*.yaml).
    #[arg(required = true)]
    pub workloads: Vec<PathBuf>,
    /// `e2e` (processes and the API) or `in-process` (the algorithm alone).
    #[arg(long, default_value = "e2e")]
    pub mode: String,
    /// Where the JSON report and the SVG plot go.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Throughput window.
    #[arg(long, default_value_t = 1000)]
    pub window_ms: u64,
    /// Pod creations in flight (e2e).
    #[arg(long)]
    pub concurrency: Option<usize>,
}

pub async fn run(o: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&o.out_dir)?;
    for f in &o.workloads {
        let w = Workload::load(f)?;
        let report = match o.mode.as_str() {
            "e2e" => {
                let mut opts = E2eOptions {
                    apiserver_bin: crate::procs::sibling_binary("rkube-apiserver")?,
                    scheduler_bin: crate::procs::sibling_binary("rkube-scheduler")?,
                    window: Duration::from_millis(o.window_ms),
                    ..Default::default()
                };
                if let Some(c) = o.concurrency {
                    opts.concurrency = c;
                }
                run_end_to_end(&w, &opts).await?
            }
            "in-process" => run_in_process(&w, &RunOptions { window: Duration::from_millis(o.window_ms), ..Default::default() })?,
            other => anyhow::bail!("--mode {other:?}: want e2e or in-process"),
        };
        println!("{}", report.render_table());
        let base = o.out_dir.join(format!("{}-{}", w.name.to_lowercase(), o.mode));
        report.write_json(&base.with_extension("json"))?;
        report.write_svg(&base.with_extension("svg"))?;
        println!("report: {}.json, plot: {}.svg", base.display(), base.display());
    }
    Ok(())
}
