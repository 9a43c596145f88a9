//! Benchmark report: throughput over fixed windows and latency percentiles,
//! as a terminal table, JSON, and an SVG plot of throughput over time.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Average and percentiles of a sample set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub average: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

/// Nearest-rank percentile of sorted data (upstream's throughput collector
/// sorts samples and indexes at `ceil(n*p/100)-1`).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Stats {
    pub fn of(samples: &[f64]) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        Stats {
            average: s.iter().sum::<f64>() / s.len() as f64,
            p50: percentile(&s, 50.0),
            p90: percentile(&s, 90.0),
            p95: percentile(&s, 95.0),
            p99: percentile(&s, 99.0),
            min: s[0],
            max: s[s.len() - 1],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    /// Scheduled pods / total measured time.
    pub average: f64,
    /// Statistics over the windows (pods/s in each window).
    pub windows: Stats,
    /// Pods/s per window, in order (the last one scaled if partial).
    pub samples: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub workload: String,
    pub mode: String,
    pub nodes: usize,
    pub init_pods: usize,
    pub measured_pods: usize,
    pub scheduled: usize,
    pub unschedulable: usize,
    pub duration_seconds: f64,
    pub window_seconds: f64,
    /// pods/s.
    pub throughput: Throughput,
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
    /// User + system CPU milliseconds per scheduled pod.
    pub ms_per_pod: f64,
    /// Average cores it used over the measured phase.
    pub cores: f64,
}

impl Report {
    /// `scheduled`: per pod, (completion offset from start, attempt latency).
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
        let full = (total / w).floor() as usize;
        let partial = total - full as f64 * w;
        let nwin = full + usize::from(partial > 1e-9);
        let mut counts = vec![0usize; nwin.max(1)];
        for (t, _) in scheduled {
            let i = ((t.as_secs_f64() / w) as usize).min(counts.len() - 1);
            counts[i] += 1;
        }
        let samples: Vec<f64> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let len = if i < full { w } else { partial.max(1e-9) };
                *c as f64 / len
            })
            .collect();
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
                windows: Stats::of(&samples),
                samples,
            },
            latency_ms: Stats::of(&lat),
            first_failure,
            threads: rayon::current_num_threads(),
            etcd: None,
            cpu_per_pod: Vec::new(),
        }
    }

    pub fn render_table(&self) -> String {
        let mut s = String::new();
        let t = &self.throughput.windows;
        let l = &self.latency_ms;
        let _ = writeln!(s, "workload {} ({}), {} nodes, {} init pods, {} threads", self.workload, self.mode, self.nodes, self.init_pods, self.threads);
        let _ = writeln!(
            s,
            "measured {} pods: {} scheduled, {} unschedulable, in {:.3} s",
            self.measured_pods, self.scheduled, self.unschedulable, self.duration_seconds
        );
        let _ = writeln!(s, "{:<34} {:>10} {:>10} {:>10} {:>10} {:>10}", "", "average", "p50", "p90", "p99", "max");
        let _ = writeln!(
            s,
            "{:<34} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            format!("throughput pods/s ({:.1} s windows)", self.window_seconds),
            self.throughput.average,
            t.p50,
            t.p90,
            t.p99,
            t.max
        );
        let _ = writeln!(
            s,
            "{:<34} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
            "scheduling latency ms", l.average, l.p50, l.p90, l.p99, l.max
        );
        if let Some(e) = &self.etcd {
            let _ = writeln!(
                s,
                "{:<34} {:>10.0}   ({} txns of {} B, {} in flight, same run)",
                "raw etcd txn/s (1 per pod)", e.txn_per_second, e.transactions, e.value_bytes, e.in_flight
            );
            let _ = writeln!(s, "{:<34} {:>10.2}", "end-to-end / raw etcd", e.ratio);
            let _ = writeln!(s, "{:<34} {:>10.0}", "pods created/s (measured phase)", e.pods_created_per_second);
        }
        if !self.cpu_per_pod.is_empty() {
            let total: f64 = self.cpu_per_pod.iter().map(|c| c.ms_per_pod).sum();
            let parts: Vec<String> =
                self.cpu_per_pod.iter().map(|c| format!("{} {:.3} ({:.2} cores)", c.process, c.ms_per_pod, c.cores)).collect();
            let _ = writeln!(s, "{:<34} {:>10.3}   = {}", "CPU ms per pod (measured phase)", total, parts.join(" + "));
            let _ = writeln!(
                s,
                "{:<34} {:>10.0}   (pods/s if CPU-bound: {} cores / CPU per pod)",
                "CPU ceiling pods/s", self.threads as f64 * 1e3 / total.max(1e-9), self.threads
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_percentiles() {
        let check = |samples: &[f64], expected: Stats| assert_eq!(Stats::of(samples), expected);
        check(&[], Stats::default());
        check(&[5.0], Stats { average: 5.0, p50: 5.0, p90: 5.0, p95: 5.0, p99: 5.0, min: 5.0, max: 5.0 });
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        check(&hundred, Stats { average: 50.5, p50: 50.0, p90: 90.0, p95: 95.0, p99: 99.0, min: 1.0, max: 100.0 });
    }

    #[test]
    fn windows_count_pods_per_second() {
        let ms = Duration::from_millis;
        // 3 pods in [0,1s), 1 pod in [1s,2s), 1 pod in the last half window [2s, 2.5s).
        let sched: Vec<(Duration, Duration)> =
            [100, 200, 900, 1500, 2100].iter().map(|t| (ms(*t), ms(1))).collect();
        let r = Report::build("w", "in-process", 1, 0, 5, &sched, 0, None, ms(2500), Duration::from_secs(1));
        assert_eq!(r.throughput.samples, vec![3.0, 1.0, 2.0]);
        assert_eq!(r.throughput.average, 2.0);
        assert_eq!(r.latency_ms.p99, 1.0);
        let dir = tempfile::tempdir().unwrap();
        r.write_json(&dir.path().join("r.json")).unwrap();
        let back: Report = serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
        assert_eq!(back.throughput.samples, r.throughput.samples);
        r.write_svg(&dir.path().join("r.svg")).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("r.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.trim_end().ends_with("</svg>"));
        assert!(r.render_table().contains("throughput pods/s"));
    }
}

/// The raw etcd figure an end-to-end run measures beside the pods (the
/// end-to-end runner is `rkube bench scheduler --mode e2e`, in the CLI,
/// since it talks to etcd directly).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdCeiling {
    /// Transactions per second: one small create-if-absent txn per pod.
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
