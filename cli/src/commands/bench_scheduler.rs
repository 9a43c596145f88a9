//! `rkube bench scheduler`: the scheduler_perf of rkube. End to end (real
//! etcd + rkube-apiserver + rkube-scheduler processes, simulated nodes, pods
//! created through the API, the raw etcd transaction rate measured in the
//! same run) or in-process (the same algorithm on an in-memory snapshot,
//! repeated on fresh state until `--min-seconds` of measured work).
//!
//! Every run writes, per workload, `<out-dir>/<workload>-<mode>.json` (and
//! an SVG plot beside it); with `--json PATH`, also one file holding the
//! figures of all the workloads of the command (keys name the workload, so
//! they stay distinct). Both are a [`BenchJson`]: `bench`, `environment`,
//! the flat `figures` list, and the details. Since both carry the same
//! figures, a results directory that `scripts/bench-report` reads should
//! hold one of them per run, not both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use rkube_scheduler::perf::{run_in_process, Figure, Report, RunOptions, Workload};

use super::bench_scheduler_e2e::{run_end_to_end, E2eOptions};
use crate::bench_env::Environment;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Workload files (scheduler/workloads/*.yaml).
    #[arg(required = true)]
    pub workloads: Vec<PathBuf>,
    /// `e2e` (processes and the API) or `in-process` (the algorithm alone).
    #[arg(long, default_value = "e2e")]
    pub mode: String,
    /// Where the per-workload JSON reports and SVG plots go.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Also write one JSON file with the figures of every workload run
    /// (the file to keep for `scripts/bench-report`; keep `--out-dir`
    /// elsewhere: its per-workload files carry the same figures).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Throughput window.
    #[arg(long, default_value_t = 1000)]
    pub window_ms: u64,
    /// Pod creations in flight (e2e).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// In-process: repeat the workload, each time on fresh state, until the
    /// measured work adds up to at least this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub min_seconds: f64,
}

/// The shape of every `rkube bench` JSON file: what was run, where, its
/// headline figures (stable keys, see [`Figure`]), then the details.
#[derive(Serialize)]
pub struct BenchJson<'a, D: Serialize> {
    /// `scheduler`, `apiserver`, …
    pub bench: &'a str,
    pub environment: &'a Environment,
    pub figures: &'a [Figure],
    #[serde(flatten)]
    pub details: D,
}

impl<D: Serialize> BenchJson<'_, D> {
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

/// The details of the `--json` file: every workload's report.
#[derive(Serialize)]
struct Runs<'a> {
    runs: &'a [Report],
}

pub async fn run(o: Options) -> anyhow::Result<()> {
    let env = Environment::capture();
    if !(o.min_seconds.is_finite() && o.min_seconds >= 0.0) {
        anyhow::bail!("--min-seconds {}: want a number of seconds ≥ 0", o.min_seconds);
    }
    std::fs::create_dir_all(&o.out_dir)?;
    let mut reports = Vec::new();
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
            "in-process" => run_in_process(
                &w,
                &RunOptions {
                    window: Duration::from_millis(o.window_ms),
                    min_seconds: Duration::from_secs_f64(o.min_seconds),
                    ..Default::default()
                },
            )?,
            other => anyhow::bail!("--mode {other:?}: want e2e or in-process"),
        };
        println!("{}", report.render_table());
        let base = o.out_dir.join(format!("{}-{}", w.name.to_lowercase(), o.mode));
        let figures = report.figures();
        BenchJson { bench: "scheduler", environment: &env, figures: &figures, details: &report }.write(&base.with_extension("json"))?;
        report.write_svg(&base.with_extension("svg"))?;
        println!("report: {}.json, plot: {}.svg", base.display(), base.display());
        reports.push(report);
    }
    if let Some(p) = &o.json {
        let figures: Vec<Figure> = reports.iter().flat_map(Report::figures).collect();
        BenchJson { bench: "scheduler", environment: &env, figures: &figures, details: Runs { runs: &reports } }.write(p)?;
        println!("figures of {} workload(s): {}", reports.len(), p.display());
    }
    Ok(())
}
