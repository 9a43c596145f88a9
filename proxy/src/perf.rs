//! The benchmark: how long syncs take at scale, next to the bare
//! `iptables-restore` of the same text, in the same run.
//!
//! Each case runs in a throwaway network namespace (never the host's
//! tables), which is deleted afterwards. Needs root. Figures are reported,
//! never asserted.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use serde_json::json;

use crate::conntrack::ConntrackCmd;
use crate::iptables::{restore_with, Backend, IptablesCmd};
use crate::netns::NetNs;
use crate::proxier::{Proxier, ProxierConfig, SyncKind};
use crate::rules::RulesConfig;

/// Figures for one (services, endpoints per service) case.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub services: usize,
    pub endpoints_per_service: usize,
    pub nat_rules: usize,
    pub bytes: usize,
    /// First sync of a fresh proxier: full, with `iptables-save` inspection.
    pub cold_sync: Duration,
    /// Full sync replacing the same ruleset (best of the repetitions);
    /// None with 0 repetitions.
    pub full_sync: Option<Duration>,
    /// Of which: generating the text and bookkeeping (not iptables).
    pub full_sync_overhead: Option<Duration>,
    /// Bare `iptables-restore --noflush` of the same text (best of reps).
    pub raw_restore: Option<Duration>,
    /// One Endpoints change → rules applied (partial sync), median of 5.
    pub endpoint_change: Duration,
    /// Of which: the `iptables-restore` run (same sync as the median).
    pub endpoint_change_restore: Duration,
    /// Bytes of restore input for that change.
    pub endpoint_change_bytes: usize,
}

impl BenchResult {
    /// Our full sync over the bare restore of the same text.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.full_sync?.as_secs_f64() / self.raw_restore?.as_secs_f64())
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

/// Run one case inside `ns`.
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
    let mut full_sync: Option<Duration> = None;
    let mut overhead: Option<Duration> = None;
    let mut raw: Option<Duration> = None;
    let mut nat_rules = cold.nat_rules_total;
    let mut bytes = cold.bytes;
    for _ in 0..reps {
        let r = p.sync(SyncKind::Full)?;
        if full_sync.is_none_or(|f| r.duration < f) {
            full_sync = Some(r.duration);
            overhead = Some(r.duration - r.restore_duration);
        }
        nat_rules = r.nat_rules_total;
        let text = r.text.unwrap_or_default();
        bytes = text.len();
        let t = Instant::now();
        restore_with(&ipt.restore_bin, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let d = t.elapsed();
        raw = Some(raw.map_or(d, |r| r.min(d)));
    }

    let mut changes = Vec::new();
    for g in 1..=5 {
        let t = Instant::now();
        p.on_endpoints_update(&eps(services / 2, per, g));
        let r = p.sync(SyncKind::Auto)?;
        anyhow::ensure!(!r.full && r.services_written == 1, "expected a partial sync, got {r:?}");
        changes.push((t.elapsed(), r.restore_duration, r.bytes));
    }
    changes.sort();
    let median = changes[changes.len() / 2];

    Ok(BenchResult {
        services,
        endpoints_per_service: per,
        nat_rules,
        bytes,
        cold_sync: cold.duration,
        full_sync,
        full_sync_overhead: overhead,
        raw_restore: raw,
        endpoint_change: median.0,
        endpoint_change_restore: median.1,
        endpoint_change_bytes: median.2,
    })
}

/// Run every `(services, endpoints per service)` case, each in its own
/// throwaway network namespace, with `reps` repetitions of the full sync
/// and raw restore (the best is kept; 0 skips them: at 10,000 services
/// each is a long restore).
pub fn bench(cases: &[(usize, usize)], reps: usize, backend: Backend) -> anyhow::Result<Vec<BenchResult>> {
    let mut out = Vec::new();
    for &(services, per) in cases {
        let ns = NetNs::new("rkpb")?;
        let r = ns.run(move || run_case(services, per, reps, backend))??;
        out.push(r);
    }
    Ok(out)
}

/// A table for humans.
pub fn format_results(results: &[BenchResult]) -> String {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let opt = |d: Option<Duration>| d.map(ms).unwrap_or_else(|| "-".into());
    let mut s = String::from(
        "services  eps/svc  nat rules   MiB  cold sync ms  full sync ms (ours)  raw restore ms  ratio  1 endpoint change ms (restore ms, bytes)\n",
    );
    for r in results {
        s.push_str(&format!(
            "{:>8}  {:>7}  {:>9}  {:>4.1}  {:>12}  {:>12} ({:>5})  {:>14}  {:>5}  {:>8} ({:>6}, {:>5})\n",
            r.services,
            r.endpoints_per_service,
            r.nat_rules,
            r.bytes as f64 / 1048576.0,
            ms(r.cold_sync),
            opt(r.full_sync),
            opt(r.full_sync_overhead),
            opt(r.raw_restore),
            r.ratio().map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into()),
            ms(r.endpoint_change),
            ms(r.endpoint_change_restore),
            r.endpoint_change_bytes,
        ));
    }
    s
}
