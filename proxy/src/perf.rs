//! The benchmark: how long syncs take at scale, and how much of that is
//! the proxy's own work rather than `iptables-restore`'s.
//!
//! Each case (N services × E endpoints each) runs in a throwaway network
//! namespace (never the host's tables), which is deleted afterwards. Needs
//! root. Figures are reported, never asserted.
//!
//! Per case:
//! - **cold sync**: the first sync of a fresh proxier (full, with
//!   `iptables-save` inspection);
//! - `reps` **full syncs** replacing the same ruleset. Each is timed as a
//!   whole ([`SyncReport::duration`]) and, within that same sync, its one
//!   `iptables-restore` run ([`SyncReport::restore_duration`]); the
//!   **proxy's own part** of a sync is the difference (rendering the rules
//!   and bookkeeping). Being two readings of one clock around one sync, the
//!   own part is never negative and a full sync never shorter than the
//!   restore inside it — unlike a full sync set against a separate restore,
//!   which compares two noisy runs;
//! - after each full sync, a **raw restore**: a bare
//!   `iptables-restore --noflush` of the same text, for reference;
//! - five **endpoint changes**: one Endpoints update → rules applied (a
//!   partial sync), again with the restore inside that sync and the own part.
//!
//! Each series is summarised as median and min–max ([`machinery::stats::Summary`],
//! nearest rank). The sample lists are kept, in the order measured.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use machinery::stats::Summary;
use serde::Serialize;
use serde_json::json;

use crate::conntrack::ConntrackCmd;
use crate::iptables::{restore_with, Backend, IptablesCmd};
use crate::netns::NetNs;
use crate::proxier::{Proxier, ProxierConfig, SyncKind, SyncReport};
use crate::rules::RulesConfig;

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// One sync, timed as a whole and in its `iptables-restore` (same sync, same clock).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SyncTiming {
    /// The whole sync (for an endpoint change: from the update's arrival).
    pub total_ms: f64,
    /// Its `iptables-restore` run.
    pub restore_ms: f64,
    /// The rest: rendering the rules and bookkeeping (`total − restore`,
    /// computed before rounding).
    pub own_ms: f64,
    /// Bytes of restore input.
    pub bytes: usize,
}

impl SyncTiming {
    /// `total` spans the whole sync reported in `r` (which must not have
    /// inspected: an `iptables-save` would count as the proxy's own part).
    pub fn of(total: Duration, r: &SyncReport) -> SyncTiming {
        SyncTiming { total_ms: ms(total), restore_ms: ms(r.restore_duration), own_ms: ms(total.saturating_sub(r.restore_duration)), bytes: r.bytes }
    }
}

/// Median and min–max of one series (`None` for an empty one).
pub fn summary(samples: impl IntoIterator<Item = f64>) -> Option<Summary> {
    Summary::of(&samples.into_iter().collect::<Vec<_>>())
}

/// Figures for one (services, endpoints per service) case.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// `<services>x<endpoints per service>`, as `--cases` takes it.
    pub case: String,
    pub services: usize,
    pub endpoints_per_service: usize,
    pub nat_rules: usize,
    pub bytes: usize,
    /// First sync of a fresh proxier: full, with `iptables-save` inspection.
    pub cold_sync_ms: f64,
    /// The full syncs replacing the same ruleset, in the order run.
    pub full_syncs: Vec<SyncTiming>,
    /// The bare `iptables-restore --noflush` of the same text after each.
    pub raw_restores_ms: Vec<f64>,
    /// One Endpoints change → rules applied (partial sync), 5 times.
    pub endpoint_changes: Vec<SyncTiming>,
}

impl BenchResult {
    pub fn full_sync(&self) -> Option<Summary> {
        summary(self.full_syncs.iter().map(|s| s.total_ms))
    }
    /// The `iptables-restore` inside each full sync.
    pub fn restore(&self) -> Option<Summary> {
        summary(self.full_syncs.iter().map(|s| s.restore_ms))
    }
    /// The proxy's own part of each full sync: the primary figure.
    pub fn own(&self) -> Option<Summary> {
        summary(self.full_syncs.iter().map(|s| s.own_ms))
    }
    pub fn raw_restore(&self) -> Option<Summary> {
        summary(self.raw_restores_ms.iter().copied())
    }
    /// Full sync over the restore inside it, per sync (≥ 1).
    pub fn sync_ratio(&self) -> Option<Summary> {
        summary(self.full_syncs.iter().filter(|s| s.restore_ms > 0.0).map(|s| (s.total_ms / s.restore_ms * 1e4).round() / 1e4))
    }
    pub fn endpoint_change(&self) -> Option<Summary> {
        summary(self.endpoint_changes.iter().map(|s| s.total_ms))
    }
    pub fn endpoint_change_restore(&self) -> Option<Summary> {
        summary(self.endpoint_changes.iter().map(|s| s.restore_ms))
    }
    pub fn endpoint_change_own(&self) -> Option<Summary> {
        summary(self.endpoint_changes.iter().map(|s| s.own_ms))
    }

    /// The detailed JSON of the case: the fields above plus every series' summary.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        for (k, s) in [
            ("full_sync_ms", self.full_sync()),
            ("restore_ms", self.restore()),
            ("own_ms", self.own()),
            ("raw_restore_ms", self.raw_restore()),
            ("sync_over_restore", self.sync_ratio()),
            ("endpoint_change_ms", self.endpoint_change()),
            ("endpoint_change_restore_ms", self.endpoint_change_restore()),
            ("endpoint_change_own_ms", self.endpoint_change_own()),
        ] {
            v[k] = json!(s);
        }
        v
    }
}

fn svc(i: usize) -> Service {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i as u32 + 1);
    serde_json::from_value(json!({"metadata":{"namespace":"bench","name":format!("svc-{i}")},
        "spec":{"clusterIP":ip.to_string(),"ports":[{"name":"http","port":80,"targetPort":8080}]}}))
    .expect("static service")
}

fn eps(i: usize, n: usize, generation: usize) -> Endpoints {
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (i * (n + 8)) as u32;
    let addrs: Vec<_> = (0..n)
        .map(|j| json!({"ip": Ipv4Addr::from(base + ((j + generation) % (n + 8)) as u32).to_string()}))
        .collect();
    serde_json::from_value(json!({"metadata":{"namespace":"bench","name":format!("svc-{i}")},
        "subsets":[{"addresses":addrs,"ports":[{"name":"http","port":8080}]}]}))
    .expect("static endpoints")
}

/// Run one case (inside the calling thread's network namespace).
fn run_case(services: usize, per: usize, reps: usize, backend: Backend) -> anyhow::Result<BenchResult> {
    let cfg = ProxierConfig {
        rules: RulesConfig { cluster_cidr: Some("10.128.0.0/9".parse()?), ..Default::default() },
        min_sync_period: Duration::ZERO,
        sync_period: Duration::from_secs(3600),
        keep_text: true,
        ..Default::default()
    };
    let ipt = IptablesCmd::new(backend);
    let p = Proxier::new(cfg, Arc::new(ipt.clone()), Arc::new(ConntrackCmd::default()));
    for i in 0..services {
        p.on_service_update(&svc(i));
        p.on_endpoints_update(&eps(i, per, 0));
    }
    p.on_services_synced();
    p.on_endpoints_synced();

    let cold = p.sync(SyncKind::Auto)?;
    let mut nat_rules = cold.nat_rules_total;
    let mut bytes = cold.bytes;
    let mut full_syncs = Vec::new();
    let mut raw_restores_ms = Vec::new();
    for _ in 0..reps {
        let r = p.sync(SyncKind::Full)?;
        anyhow::ensure!(r.full && !r.inspected, "expected a full sync without iptables-save, got {r:?}");
        full_syncs.push(SyncTiming::of(r.duration, &r));
        nat_rules = r.nat_rules_total;
        let text = r.text.unwrap_or_default();
        bytes = text.len();
        let t = Instant::now();
        restore_with(&ipt.restore_bin, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
        raw_restores_ms.push(ms(t.elapsed()));
    }

    let mut endpoint_changes = Vec::new();
    for g in 1..=5 {
        let t = Instant::now();
        p.on_endpoints_update(&eps(services / 2, per, g));
        let r = p.sync(SyncKind::Auto)?;
        let total = t.elapsed();
        anyhow::ensure!(!r.full && !r.inspected && r.services_written == 1, "expected a partial sync, got {r:?}");
        endpoint_changes.push(SyncTiming::of(total, &r));
    }

    Ok(BenchResult { case: format!("{services}x{per}"), services, endpoints_per_service: per, nat_rules, bytes, cold_sync_ms: ms(cold.duration), full_syncs, raw_restores_ms, endpoint_changes })
}

/// Run every `(services, endpoints per service)` case, each in its own
/// throwaway network namespace, with `reps` full syncs, each followed by a
/// raw restore of its text (0 skips them: at 10,000 services with the nft
/// build each is a long restore).
pub fn bench(cases: &[(usize, usize)], reps: usize, backend: Backend) -> anyhow::Result<Vec<BenchResult>> {
    let mut out = Vec::new();
    for &(services, per) in cases {
        let ns = NetNs::new("rkpb")?;
        let r = ns.run(move || run_case(services, per, reps, backend))??;
        out.push(r);
    }
    Ok(out)
}

/// `median (min–max)` in ms, or `-`.
fn spread(s: Option<Summary>) -> String {
    let f = |v: f64| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") };
    match s {
        Some(s) if s.n > 1 => format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)),
        Some(s) => f(s.median),
        None => "-".into(),
    }
}

/// A table for humans: ms, median (min–max) over the repetitions.
pub fn format_results(results: &[BenchResult]) -> String {
    let mut s = String::from("ms, median (min–max); \"ours\" = the full sync minus the iptables-restore inside that same sync\n");
    s.push_str(&format!(
        "{:>10}  {:>9}  {:>5}  {:>9}  {:>22}  {:>24}  {:>24}  {:>24}  {:>22}  {:>22}\n",
        "case", "nat rules", "MiB", "cold sync", "ours (primary)", "full sync", "restore in full sync", "raw restore", "endpoint change", "of which ours"
    ));
    for r in results {
        s.push_str(&format!(
            "{:>10}  {:>9}  {:>5.1}  {:>9.1}  {:>22}  {:>24}  {:>24}  {:>24}  {:>22}  {:>22}\n",
            r.case,
            r.nat_rules,
            r.bytes as f64 / 1048576.0,
            r.cold_sync_ms,
            spread(r.own()),
            spread(r.full_sync()),
            spread(r.restore()),
            spread(r.raw_restore()),
            spread(r.endpoint_change()),
            spread(r.endpoint_change_own()),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(total_ms: u64, restore_ms: u64) -> SyncTiming {
        let r = SyncReport { restore_duration: Duration::from_millis(restore_ms), bytes: 10, ..Default::default() };
        SyncTiming::of(Duration::from_millis(total_ms), &r)
    }

    #[test]
    fn own_part_is_within_the_same_sync() {
        let t = timing(105, 100);
        assert_eq!((t.total_ms, t.restore_ms, t.own_ms, t.bytes), (105.0, 100.0, 5.0, 10));
        // Never negative, whatever the readings.
        assert_eq!(timing(5, 7).own_ms, 0.0);
    }

    #[test]
    fn series_are_summarised_as_median_and_spread() {
        let r = BenchResult {
            case: "50x2".into(),
            services: 50,
            endpoints_per_service: 2,
            nat_rules: 405,
            bytes: 1000,
            cold_sync_ms: 30.0,
            full_syncs: vec![timing(120, 100), timing(90, 80), timing(200, 150)],
            raw_restores_ms: vec![70.0, 110.0, 95.0],
            endpoint_changes: vec![timing(12, 10); 5],
        };
        let s = r.full_sync().unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 120.0, 90.0, 200.0));
        let o = r.own().unwrap();
        assert_eq!((o.median, o.min, o.max), (20.0, 10.0, 50.0));
        assert_eq!(r.raw_restore().unwrap().median, 95.0);
        assert_eq!(r.endpoint_change_own().unwrap().median, 2.0);
        let v = r.to_json();
        assert_eq!(v["case"], "50x2");
        assert_eq!(v["own_ms"]["median"], 20.0);
        assert_eq!(v["full_syncs"].as_array().unwrap().len(), 3);
        assert_eq!(v["full_syncs"][0]["own_ms"], 20.0);
        assert!(v["sync_over_restore"]["min"].as_f64().unwrap() >= 1.0);
        let table = format_results(&[r]);
        assert!(table.contains("20.0 (10.0–50.0)"), "{table}");
        // No repetitions: no full-sync summaries, still endpoint changes.
        let none = BenchResult { endpoint_changes: vec![timing(12, 10)], ..empty() };
        assert!(none.own().is_none() && none.to_json()["own_ms"].is_null());
        assert!(format_results(&[none]).contains(" -"));
    }

    fn empty() -> BenchResult {
        BenchResult { case: "1x1".into(), services: 1, endpoints_per_service: 1, nat_rules: 0, bytes: 0, cold_sync_ms: 0.0, full_syncs: vec![], raw_restores_ms: vec![], endpoint_changes: vec![] }
    }
}
