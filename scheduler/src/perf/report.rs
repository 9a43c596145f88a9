//! Benchmark report: throughput over fixed windows and latency percentiles,
//! as a terminal table, JSON, and an SVG plot of throughput over time; and
//! the [`Figure`]s, the flat list of headline numbers every `rkube bench`
//! JSON carries.
//!
//! Rules the figures keep:
//!
//! * the **average** throughput is scheduled pods / measured seconds;
//! * **windows** are full windows only: a partial last window is never
//!   scaled up to a full one (its pods count in the average, and the window
//!   is recorded with its true length in `partial_window`);
//! * **window percentiles** are reported only with at least
//!   [`MIN_WINDOWS_FOR_PERCENTILES`] full windows: with fewer, the p90 and
//!   p99 of the windows are just their maximum;
//! * any **percentile** (nearest rank, `machinery::stats`) is reported only
//!   when there are samples above it: p needs n ≥ 100 / (100 − p), so the
//!   p50 needs 2 samples, the p90 10, the p99 100 (see [`Stats::of`]).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use machinery::stats::{percentile_sorted, Summary};
use serde::{Deserialize, Serialize};

/// Fewest full windows whose percentiles a report gives.
pub const MIN_WINDOWS_FOR_PERCENTILES: usize = 20;

/// Least CPU time a process must have used for its CPU-per-pod figure:
/// `/proc` counts 10 ms ticks, so below 10 ticks the figure is off by more
/// than 10 %.
pub const MIN_MEASURABLE_CPU_SECONDS: f64 = 0.1;

/// Count, average, extremes and nearest-rank percentiles of a sample set.
/// A percentile is `None` when there are too few samples for it (see
/// [`Stats::of`]); `None` fields are left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    pub average: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    pub min: f64,
    pub max: f64,
}

/// The fewest samples for which the nearest-rank p-th percentile is not
/// the maximum: n ≥ 100 / (100 − p).
pub fn min_samples_for(p: f64) -> usize {
    if p >= 100.0 {
        return usize::MAX;
    }
    (100.0 / (100.0 - p)).ceil() as usize
}

impl Stats {
    /// Average, min, max, and each percentile p (50, 90, 95, 99) whose
    /// [`min_samples_for`] the sample count reaches.
    pub fn of(samples: &[f64]) -> Stats {
        Stats::with_min_samples(samples, 0)
    }

    /// As [`Stats::of`], and no percentile at all under `min_n` samples.
    pub fn with_min_samples(samples: &[f64], min_n: usize) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let n = s.len();
        let pct = |p: f64| (n >= min_n && n >= min_samples_for(p)).then(|| percentile_sorted(&s, p)).flatten();
        Stats {
            n,
            average: s.iter().sum::<f64>() / n as f64,
            p50: pct(50.0),
            p90: pct(90.0),
            p95: pct(95.0),
            p99: pct(99.0),
            min: s[0],
            max: s[n - 1],
        }
    }
}

/// A last window shorter than the others: recorded as it is, never scaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialWindow {
    pub seconds: f64,
    pub pods: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    /// Scheduled pods / total measured seconds.
    pub average: f64,
    /// Full windows of the measured time.
    pub window_count: usize,
    /// Statistics over the full windows (pods/s in each); percentiles only
    /// with at least [`MIN_WINDOWS_FOR_PERCENTILES`] of them. `None` when
    /// the measured time is shorter than one window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<Stats>,
    /// Pods/s of each full window, in order.
    pub samples: Vec<f64>,
    /// The measured time's tail after the last full window; its pods count
    /// in `average` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_window: Option<PartialWindow>,
}

impl Throughput {
    /// Why the window percentiles are missing, when they are.
    pub fn no_percentiles_reason(&self) -> Option<String> {
        (self.window_count < MIN_WINDOWS_FOR_PERCENTILES)
            .then(|| format!("n windows = {} < {MIN_WINDOWS_FOR_PERCENTILES}: percentiles not reported", self.window_count))
    }
}

/// How many times the measured phase ran (in process: repeated on fresh
/// state until enough measured time added up; end to end: once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Repetitions {
    pub count: usize,
    /// Measured seconds of each repetition.
    pub seconds: Summary,
    /// Pods/s of each repetition (its scheduled pods / its measured seconds).
    pub throughput: Summary,
}

impl Repetitions {
    /// From (scheduled pods, measured time) per repetition.
    pub fn of(reps: &[(usize, Duration)]) -> Option<Repetitions> {
        let secs: Vec<f64> = reps.iter().map(|(_, d)| d.as_secs_f64()).collect();
        let rates: Vec<f64> = reps.iter().map(|(n, d)| if d.is_zero() { 0.0 } else { *n as f64 / d.as_secs_f64() }).collect();
        Some(Repetitions { count: reps.len(), seconds: Summary::of(&secs)?, throughput: Summary::of(&rates)? })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub workload: String,
    pub mode: String,
    pub nodes: usize,
    pub init_pods: usize,
    /// Measured pods over all repetitions (the workload's measured pods ×
    /// `repetitions.count`); `scheduled` and `unschedulable` likewise.
    pub measured_pods: usize,
    pub scheduled: usize,
    pub unschedulable: usize,
    /// Measured seconds, all repetitions added up.
    pub duration_seconds: f64,
    pub window_seconds: f64,
    /// pods/s.
    pub throughput: Throughput,
    pub repetitions: Repetitions,
    /// In-process: scheduling attempt latency (pop → assumed).
    /// End-to-end: pod created (create request sent) → binding stored in etcd.
    /// Milliseconds.
    pub latency_ms: Stats,
    /// The FailedScheduling message of the first unschedulable pod.
    pub first_failure: Option<String>,
    pub threads: usize,
    /// End-to-end only: the raw etcd transaction rate of the same run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdCeiling>,
    /// End-to-end only: CPU time each process used during the measured
    /// phase, per scheduled pod. Unlike pods/s this barely depends on what
    /// else the machine runs, so it is the figure to compare across runs;
    /// cores / (total per pod) is the throughput ceiling when CPU-bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_per_pod: Vec<ProcessCpu>,
}

/// One process's share of the CPU in an end-to-end run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessCpu {
    pub process: String,
    /// User + system CPU seconds over the measured phase.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// User + system CPU milliseconds per scheduled pod.
    pub ms_per_pod: f64,
    /// Average cores it used over the measured phase.
    pub cores: f64,
}

impl ProcessCpu {
    /// Used enough CPU for its figure to be within /proc's resolution.
    pub fn measurable(&self) -> bool {
        self.cpu_seconds >= MIN_MEASURABLE_CPU_SECONDS
    }

    /// The name in figure keys: `rkube-apiserver` → `apiserver`.
    pub fn short_name(&self) -> &str {
        self.process.strip_prefix("rkube-").unwrap_or(&self.process)
    }
}

pub use machinery::stats::{Better, Figure};

/// Appends the p50, p90 and p99 of `stats` (those it has) as
/// lower-is-better figures in `unit`; `key` names the percentile `{p}`
/// (`apiserver.watch_fanout_{p}_ms` → `apiserver.watch_fanout_p50_ms`).
pub fn percentile_figures(out: &mut Vec<Figure>, key: &str, label: &str, unit: &str, stats: &Stats) {
    for (p, v) in [("p50", stats.p50), ("p90", stats.p90), ("p99", stats.p99)] {
        if let Some(v) = v {
            out.push(Figure::lower(key.replace("{p}", p), format!("{label}, {p}"), unit, v));
        }
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.prec$}"))
}

impl Report {
    /// `scheduled`: per pod, (completion offset from the start of the
    /// measured time, attempt latency); `elapsed`: the measured time. One
    /// repetition; see [`Report::repetitions`] for more.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        workload: &str,
        mode: &str,
        nodes: usize,
        init_pods: usize,
        measured_pods: usize,
        scheduled: &[(Duration, Duration)],
        unschedulable: usize,
        first_failure: Option<String>,
        elapsed: Duration,
        window: Duration,
    ) -> Report {
        let w = window.as_secs_f64();
        let total = elapsed.as_secs_f64();
        // Full windows only; what is left after them is the partial window.
        let full = if w > 0.0 { (total / w + 1e-9).floor() as usize } else { 0 };
        let mut counts = vec![0usize; full];
        let mut tail = 0usize;
        for (t, _) in scheduled {
            let i = if w > 0.0 { (t.as_secs_f64() / w) as usize } else { usize::MAX };
            match counts.get_mut(i) {
                Some(c) => *c += 1,
                None => tail += 1,
            }
        }
        let samples: Vec<f64> = counts.iter().map(|c| *c as f64 / w).collect();
        let partial = total - full as f64 * w;
        let partial_window = (partial > 1e-9).then_some(PartialWindow { seconds: partial, pods: tail });
        let lat: Vec<f64> = scheduled.iter().map(|(_, l)| l.as_secs_f64() * 1e3).collect();
        Report {
            workload: workload.to_string(),
            mode: mode.to_string(),
            nodes,
            init_pods,
            measured_pods,
            scheduled: scheduled.len(),
            unschedulable,
            duration_seconds: total,
            window_seconds: w,
            throughput: Throughput {
                average: if total > 0.0 { scheduled.len() as f64 / total } else { 0.0 },
                window_count: full,
                windows: (!samples.is_empty()).then(|| Stats::with_min_samples(&samples, MIN_WINDOWS_FOR_PERCENTILES)),
                samples,
                partial_window,
            },
            repetitions: Repetitions::of(&[(scheduled.len(), elapsed)]).expect("one repetition"),
            latency_ms: Stats::of(&lat),
            first_failure,
            threads: rayon::current_num_threads(),
            etcd: None,
            cpu_per_pod: Vec::new(),
        }
    }

    /// The mode as figure keys spell it: `e2e` or `in-process`.
    pub fn key_mode(&self) -> &str {
        match self.mode.as_str() {
            "end-to-end" => "e2e",
            m => m,
        }
    }

    /// The headline numbers, keyed `scheduler.<e2e|in-process>.<workload>.<figure>`.
    pub fn figures(&self) -> Vec<Figure> {
        let k = format!("scheduler.{}.{}", self.key_mode(), self.workload);
        let what = format!("{} ({})", self.workload, self.mode);
        let mut f = vec![Figure::higher(
            format!("{k}.throughput_avg"),
            format!("{what}: pods/s, scheduled pods / measured seconds"),
            "pods/s",
            self.throughput.average,
        )];
        if let Some(ws) = &self.throughput.windows {
            for (p, v) in [("p50", ws.p50), ("p90", ws.p90), ("p99", ws.p99)] {
                if let Some(v) = v {
                    f.push(Figure::higher(
                        format!("{k}.throughput_window_{p}"),
                        format!("{what}: pods/s of {} s windows, {p}", self.window_seconds),
                        "pods/s",
                        v,
                    ));
                }
            }
        }
        let lat = if self.mode == "end-to-end" { "created → binding stored" } else { "scheduling attempt" };
        percentile_figures(&mut f, &format!("{k}.latency_{{p}}_ms"), &format!("{what}: latency ({lat})"), "ms", &self.latency_ms);
        if let Some(e) = &self.etcd {
            f.push(Figure::higher(
                format!("{k}.etcd_ceiling_txn_per_s"),
                format!("{what}: raw etcd {} of {} B, {} in flight, same run", e.operation, e.value_bytes, e.in_flight),
                "txn/s",
                e.txn_per_second,
            ));
            f.push(Figure::higher(format!("{k}.ratio_to_ceiling"), format!("{what}: pods/s ÷ raw etcd {}/s", e.operation), "ratio", e.ratio));
            f.push(Figure::higher(format!("{k}.pods_created_per_s"), format!("{what}: pods created/s (measured phase)"), "pods/s", e.pods_created_per_second));
        }
        for c in self.cpu_per_pod.iter().filter(|c| c.measurable()) {
            f.push(Figure::lower(
                format!("{k}.cpu_ms_per_pod.{}", c.short_name()),
                format!("{what}: {} CPU ms per scheduled pod", c.process),
                "ms",
                c.ms_per_pod,
            ));
        }
        if !self.cpu_per_pod.is_empty() && self.cpu_per_pod.iter().all(ProcessCpu::measurable) {
            let total = self.cpu_total_ms_per_pod();
            f.push(Figure::lower(format!("{k}.cpu_ms_per_pod.total"), format!("{what}: CPU ms per scheduled pod, all processes"), "ms", total));
            f.push(Figure::higher(
                format!("{k}.cpu_ceiling_pods_per_s"),
                format!("{what}: pods/s if CPU-bound ({} cores ÷ CPU per pod)", self.threads),
                "pods/s",
                self.threads as f64 * 1e3 / total,
            ));
        }
        f.retain(|f| f.value.is_finite());
        f
    }

    fn cpu_total_ms_per_pod(&self) -> f64 {
        self.cpu_per_pod.iter().map(|c| c.ms_per_pod).sum()
    }

    pub fn render_table(&self) -> String {
        let mut s = String::new();
        let l = &self.latency_ms;
        let reps = &self.repetitions;
        let _ = writeln!(s, "workload {} ({}), {} nodes, {} init pods, {} threads", self.workload, self.mode, self.nodes, self.init_pods, self.threads);
        if reps.count > 1 {
            let _ = writeln!(
                s,
                "measured {} pods in {} repetitions (fresh state each): {} scheduled, {} unschedulable, in {:.3} s of measured work",
                self.measured_pods, reps.count, self.scheduled, self.unschedulable, self.duration_seconds
            );
        } else {
            let _ = writeln!(
                s,
                "measured {} pods (1 repetition): {} scheduled, {} unschedulable, in {:.3} s",
                self.measured_pods, self.scheduled, self.unschedulable, self.duration_seconds
            );
        }
        let _ = writeln!(s, "{:<34} {:>10} {:>10} {:>10} {:>10} {:>10}", "", "average", "p50", "p90", "p99", "max");
        let ws = self.throughput.windows.clone().unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<34} {:>10.0} {:>10} {:>10} {:>10} {:>10}",
            format!("throughput pods/s ({:.1} s windows)", self.window_seconds),
            self.throughput.average,
            opt(ws.p50, 0),
            opt(ws.p90, 0),
            opt(ws.p99, 0),
            opt(self.throughput.windows.as_ref().map(|w| w.max), 0),
        );
        if let Some(why) = self.throughput.no_percentiles_reason() {
            let _ = writeln!(s, "  ({why})");
        }
        if let Some(p) = &self.throughput.partial_window {
            let _ = writeln!(s, "  (last partial window, {:.3} s with {} pods: in the average only)", p.seconds, p.pods);
        }
        if reps.count > 1 {
            let _ = writeln!(
                s,
                "{:<34} {:>10.0}   (n = {} repetitions: min {:.0} – max {:.0}; {:.1}–{:.1} ms each)",
                "throughput per repetition, median",
                reps.throughput.median,
                reps.count,
                reps.throughput.min,
                reps.throughput.max,
                reps.seconds.min * 1e3,
                reps.seconds.max * 1e3
            );
        }
        let _ = writeln!(
            s,
            "{:<34} {:>10.3} {:>10} {:>10} {:>10} {:>10.3}",
            format!("scheduling latency ms (n = {})", l.n),
            l.average,
            opt(l.p50, 3),
            opt(l.p90, 3),
            opt(l.p99, 3),
            l.max
        );
        if l.p99.is_none() && l.n > 0 {
            let _ = writeln!(s, "  (a percentile p needs n ≥ 100/(100−p) samples: p90 10, p99 100)");
        }
        if let Some(e) = &self.etcd {
            let _ = writeln!(
                s,
                "{:<34} {:>10.0}   ({} of {} B: {} ops, {} in flight, same run)",
                "raw etcd ceiling txn/s", e.txn_per_second, e.operation, e.value_bytes, e.transactions, e.in_flight
            );
            let _ = writeln!(s, "{:<34} {:>10.2}", "end-to-end pods/s ÷ ceiling txn/s", e.ratio);
            let _ = writeln!(s, "{:<34} {:>10.0}", "pods created/s (measured phase)", e.pods_created_per_second);
        }
        if !self.cpu_per_pod.is_empty() {
            let total = self.cpu_total_ms_per_pod();
            let parts: Vec<String> = self
                .cpu_per_pod
                .iter()
                .map(|c| format!("{} {:.3}{} ({:.2} cores)", c.process, c.ms_per_pod, if c.measurable() { "" } else { "*" }, c.cores))
                .collect();
            let _ = writeln!(s, "{:<34} {:>10.3}   = {}", "CPU ms per pod (measured phase)", total, parts.join(" + "));
            let _ = writeln!(
                s,
                "{:<34} {:>10.0}   (pods/s if CPU-bound: {} cores / CPU per pod)",
                "CPU ceiling pods/s",
                self.threads as f64 * 1e3 / total.max(1e-9),
                self.threads
            );
            if !self.cpu_per_pod.iter().all(ProcessCpu::measurable) {
                let _ = writeln!(
                    s,
                    "  (* under {MIN_MEASURABLE_CPU_SECONDS} s of CPU, under /proc's 10 ms ticks' 10 % resolution: not in the figures)"
                );
            }
        }
        if let Some(f) = &self.first_failure {
            let _ = writeln!(s, "first failure: {f}");
        }
        s
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let f = std::fs::File::create(path)?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(f), self).map_err(std::io::Error::other)
    }

    /// A small hand-written SVG line chart: throughput per window over time.
    pub fn render_svg(&self) -> String {
        let (w, h, ml, mr, mt, mb) = (640.0, 320.0, 70.0, 20.0, 40.0, 45.0);
        let pw = w - ml - mr;
        let ph = h - mt - mb;
        let ys = &self.throughput.samples;
        let ymax = ys.iter().cloned().fold(0.0f64, f64::max).max(1.0) * 1.1;
        let n = ys.len().max(1);
        let xmax = self.duration_seconds.max(self.window_seconds);
        let x_of = |i: usize| ml + pw * ((i as f64 + 0.5) * self.window_seconds).min(xmax) / xmax;
        let y_of = |v: f64| mt + ph - ph * v / ymax;
        let mut s = String::new();
        let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#);
        let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{} ({}): scheduling throughput, avg {:.0} pods/s</text>"#,
            w / 2.0,
            xml_escape(&self.workload),
            self.mode,
            self.throughput.average
        );
        // Axes and grid.
        let _ = writeln!(s, r#"<line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, mt + ph, ml + pw, mt + ph);
        let _ = writeln!(s, r#"<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{}" stroke="black"/>"#, mt + ph);
        for k in 0..=4 {
            let v = ymax * k as f64 / 4.0;
            let y = y_of(v);
            let _ = writeln!(s, r##"<line x1="{ml}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##, ml + pw);
            let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"#, ml - 5.0, y + 4.0);
        }
        for k in 0..=4 {
            let t = xmax * k as f64 / 4.0;
            let x = ml + pw * k as f64 / 4.0;
            let _ = writeln!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{t:.1}</text>"#, mt + ph + 16.0);
        }
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">time (s)</text>"#, ml + pw / 2.0, h - 8.0);
        let _ = writeln!(
            s,
            r#"<text x="15" y="{}" text-anchor="middle" transform="rotate(-90 15 {})">pods/s</text>"#,
            mt + ph / 2.0,
            mt + ph / 2.0
        );
        let pts: Vec<String> = (0..n).map(|i| format!("{:.1},{:.1}", x_of(i), y_of(ys.get(i).copied().unwrap_or(0.0)))).collect();
        let _ = writeln!(s, r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##, pts.join(" "));
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap();
            let _ = writeln!(s, r##"<circle cx="{x}" cy="{y}" r="3" fill="#1f77b4"/>"##);
        }
        s.push_str("</svg>\n");
        s
    }

    pub fn write_svg(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.render_svg())
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The raw etcd figure an end-to-end run measures beside the pods (the
/// end-to-end runner is `rkube bench scheduler --mode e2e`, in the CLI,
/// since it talks to etcd directly).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdCeiling {
    /// The etcd operation the ceiling repeats, one per pod: the same
    /// create-if-absent transaction the apiserver's create is.
    #[serde(default)]
    pub operation: String,
    /// Those operations per second.
    pub txn_per_second: f64,
    pub transactions: usize,
    pub value_bytes: usize,
    pub in_flight: usize,
    /// End-to-end throughput (average) / `txn_per_second`.
    pub ratio: f64,
    /// Pods created per second during the measured phase (its own figure:
    /// creation competes with binding for the same etcd).
    pub pods_created_per_second: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_percentiles() {
        let check = |samples: &[f64], expected: Stats| assert_eq!(Stats::of(samples), expected);
        check(&[], Stats::default());
        // One sample: no percentile (every one would be the sample itself).
        check(&[5.0], Stats { n: 1, average: 5.0, p50: None, p90: None, p95: None, p99: None, min: 5.0, max: 5.0 });
        // Ten: p50 and p90, not p95 (needs 20) nor p99 (needs 100).
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        check(&ten, Stats { n: 10, average: 5.5, p50: Some(5.0), p90: Some(9.0), p95: None, p99: None, min: 1.0, max: 10.0 });
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        check(
            &hundred,
            Stats { n: 100, average: 50.5, p50: Some(50.0), p90: Some(90.0), p95: Some(95.0), p99: Some(99.0), min: 1.0, max: 100.0 },
        );
        assert_eq!((min_samples_for(50.0), min_samples_for(90.0), min_samples_for(95.0), min_samples_for(99.0)), (2, 10, 20, 100));
    }

    fn at_ms(ts: impl IntoIterator<Item = u64>) -> Vec<(Duration, Duration)> {
        ts.into_iter().map(|t| (Duration::from_millis(t), Duration::from_millis(1))).collect()
    }

    #[test]
    fn partial_last_window_is_not_scaled() {
        let ms = Duration::from_millis;
        // 3 pods in [0,1s), 1 pod in [1s,2s), 1 pod in the last half window [2s, 2.5s).
        let sched = at_ms([100, 200, 900, 1500, 2100]);
        let r = Report::build("w", "in-process", 1, 0, 5, &sched, 0, None, ms(2500), Duration::from_secs(1));
        // Full windows only: the half window's 1 pod is not made 2 pods/s.
        assert_eq!(r.throughput.samples, vec![3.0, 1.0]);
        assert_eq!(r.throughput.window_count, 2);
        assert_eq!(r.throughput.partial_window, Some(PartialWindow { seconds: 0.5, pods: 1 }));
        // The average still counts every pod over the true measured time.
        assert_eq!(r.throughput.average, 2.0);
        assert_eq!(r.throughput.windows.as_ref().unwrap().max, 3.0);
        // A tiny tail with many pods: still not a window.
        let sched = at_ms((0..50).map(|i| 1000 + i / 10));
        let r = Report::build("w", "in-process", 1, 0, 50, &sched, 0, None, ms(1010), Duration::from_secs(1));
        assert_eq!(r.throughput.samples, vec![0.0]);
        assert_eq!(r.throughput.partial_window.as_ref().map(|p| p.pods), Some(50));
        // Shorter than one window: no windows at all, the average stands.
        let r = Report::build("w", "in-process", 1, 0, 3, &at_ms([10, 20, 30]), 0, None, ms(300), Duration::from_secs(1));
        assert!(r.throughput.samples.is_empty() && r.throughput.windows.is_none());
        assert_eq!(r.throughput.average, 10.0);
        // Exactly two windows: no partial one.
        let r = Report::build("w", "in-process", 1, 0, 2, &at_ms([500, 1500]), 0, None, ms(2000), Duration::from_secs(1));
        assert_eq!((r.throughput.samples.clone(), r.throughput.partial_window.clone()), (vec![1.0, 1.0], None));
    }

    #[test]
    fn window_percentiles_need_twenty_windows() {
        let ms = Duration::from_millis;
        // 7 s: 7 windows. No percentiles (they would be the maximum), not in the figures either.
        let sched = at_ms((0..700).map(|i| i * 10));
        let r = Report::build("W", "in-process", 1, 0, 700, &sched, 0, None, ms(7000), Duration::from_secs(1));
        let ws = r.throughput.windows.as_ref().unwrap();
        assert_eq!((ws.n, ws.p50, ws.p90, ws.p99), (7, None, None, None));
        assert!(r.throughput.no_percentiles_reason().unwrap().contains("n windows = 7 < 20"));
        assert!(r.render_table().contains("percentiles not reported"));
        assert!(!r.figures().iter().any(|f| f.key.contains("throughput_window")));
        // 25 s: 25 windows, p50 and p90 reported (p99 needs 100).
        let sched = at_ms((0..2500).map(|i| i * 10));
        let r = Report::build("W", "in-process", 1, 0, 2500, &sched, 0, None, ms(25_000), Duration::from_secs(1));
        let ws = r.throughput.windows.as_ref().unwrap();
        assert_eq!((ws.n, ws.p50, ws.p90, ws.p99), (25, Some(100.0), Some(100.0), None));
        assert!(r.throughput.no_percentiles_reason().is_none());
        let keys: Vec<String> = r.figures().into_iter().map(|f| f.key).collect();
        assert!(keys.contains(&"scheduler.in-process.W.throughput_window_p50".to_string()), "{keys:?}");
        assert!(!keys.contains(&"scheduler.in-process.W.throughput_window_p99".to_string()), "{keys:?}");
    }

    #[test]
    fn figures_are_keyed_and_finite() {
        let ms = Duration::from_millis;
        let sched = at_ms((0..200).map(|i| i * 10));
        let mut r = Report::build("Basic", "end-to-end", 1, 0, 200, &sched, 0, None, ms(2000), Duration::from_secs(1));
        r.threads = 2;
        r.etcd = Some(EtcdCeiling {
            operation: "create-if-absent txn".into(),
            txn_per_second: 1000.0,
            transactions: 1000,
            value_bytes: 1024,
            in_flight: 64,
            ratio: r.throughput.average / 1000.0,
            pods_created_per_second: 500.0,
        });
        r.cpu_per_pod = vec![
            ProcessCpu { process: "etcd".into(), cpu_seconds: 0.2, ms_per_pod: 1.0, cores: 0.1 },
            ProcessCpu { process: "rkube-apiserver".into(), cpu_seconds: 0.04, ms_per_pod: 0.2, cores: 0.02 },
        ];
        let f = r.figures();
        let get = |k: &str| f.iter().find(|x| x.key == format!("scheduler.e2e.Basic.{k}"));
        assert_eq!(get("throughput_avg").unwrap().value, 100.0);
        assert_eq!(get("throughput_avg").unwrap().better, Better::Higher);
        assert_eq!(get("etcd_ceiling_txn_per_s").unwrap().value, 1000.0);
        assert_eq!(get("ratio_to_ceiling").unwrap().value, 0.1);
        assert_eq!(get("latency_p99_ms").unwrap().better, Better::Lower);
        assert_eq!(get("cpu_ms_per_pod.etcd").unwrap().value, 1.0);
        // Under /proc's resolution: no figure, and no total either.
        assert!(get("cpu_ms_per_pod.apiserver").is_none() && get("cpu_ms_per_pod.total").is_none());
        assert!(f.iter().all(|x| x.value.is_finite()));
        let json = serde_json::to_value(&f[0]).unwrap();
        assert_eq!(json["better"], "higher");
    }

    #[test]
    fn repetitions_summarise_each_run() {
        let reps = Repetitions::of(&[(100, Duration::from_millis(100)), (100, Duration::from_millis(50)), (100, Duration::from_millis(200))]).unwrap();
        assert_eq!(reps.count, 3);
        assert_eq!((reps.throughput.min, reps.throughput.median, reps.throughput.max), (500.0, 1000.0, 2000.0));
        assert!(Repetitions::of(&[]).is_none());
    }

    #[test]
    fn json_and_svg_round_trip() {
        let ms = Duration::from_millis;
        let r = Report::build("w", "in-process", 1, 0, 5, &at_ms([100, 200, 900, 1500, 2100]), 0, None, ms(2500), Duration::from_secs(1));
        let dir = tempfile::tempdir().unwrap();
        r.write_json(&dir.path().join("r.json")).unwrap();
        let back: Report = serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
        assert_eq!(back.throughput.samples, r.throughput.samples);
        assert_eq!(back.latency_ms, r.latency_ms);
        r.write_svg(&dir.path().join("r.svg")).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("r.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.trim_end().ends_with("</svg>"));
        assert!(r.render_table().contains("throughput pods/s"));
    }
}
