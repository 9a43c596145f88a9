//! `rkube bench proxy`: per case (N services × E endpoints), full syncs
//! timed as a whole and in the `iptables-restore` inside each, so the
//! proxy's own part (rendering the rules, bookkeeping) comes from the same
//! sync; a bare `iptables-restore` of the same text for reference; and the
//! time from one endpoint change to rules applied. Each series is reported
//! as median and min–max over `--reps` (library code: `proxy/src/perf.rs`).
//! Targets: a full sync at most 1.2× its restore; one endpoint change
//! applied in < 100 ms with 10,000 services.
//!
//! Every case runs inside a throwaway network namespace (never the host's
//! tables; needs root). `--json` writes the report in the common shape of
//! every `rkube bench`: `bench`, `environment` (captured before any measured
//! work), `figures` (see [`figures`]) and the detailed `cases`.

use std::path::PathBuf;

use anyhow::Result;
use rkube_proxy::perf::BenchResult;
use serde_json::json;

use super::bench_agent::{Better, Figure};
use crate::bench_env::Environment;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Cases as SERVICESxENDPOINTS, comma-separated.
    #[arg(long, default_value = "1000x2,1000x10,5000x2,10000x2")]
    pub cases: String,
    /// Full syncs (each followed by a raw restore of its text) per case;
    /// reported as median and min–max (0 skips them).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// iptables build to drive: system (whatever `iptables-restore` is),
    /// nft or legacy.
    #[arg(long, default_value = "system")]
    pub backend: rkube_proxy::iptables::Backend,
    /// Write the figures as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn parse_cases(cases: &str) -> Result<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    for c in cases.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (s, e) = c.split_once('x').ok_or_else(|| anyhow::anyhow!("case {c:?}: want SERVICESxENDPOINTS"))?;
        out.push((s.trim().parse()?, e.trim().parse()?));
    }
    Ok(out)
}

pub fn run(o: Options) -> Result<()> {
    let env = Environment::capture();
    let cases = parse_cases(&o.cases)?;
    let results = rkube_proxy::perf::bench(&cases, o.reps, o.backend)?;
    println!("iptables backend: {}", o.backend);
    println!("{}", rkube_proxy::perf::format_results(&results));
    if let Some(p) = &o.json {
        let report = json!({
            "bench": "proxy",
            "environment": env,
            "figures": figures(&o.backend.to_string(), &results),
            "backend": o.backend.to_string(),
            "reps": o.reps,
            "cases": results.iter().map(BenchResult::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)?;
        println!("figures written to {}", p.display());
    }
    Ok(())
}

/// This run's figures, per case `<S>x<E>` (medians over the repetitions;
/// a series that was not run gives none). Keys carry the iptables build
/// (`--backend`: `system`, `nft` or `legacy`), shown as `<b>` below, e.g.
/// `proxy.<b>.own_ms.<S>x<E>`:
///
/// | key | unit | better |
/// |---|---|---|
/// | `proxy.<b>.own_ms.<S>x<E>` — full sync minus the restore inside it (primary) | ms | lower |
/// | `proxy.<b>.full_sync_ms.<S>x<E>` — a full sync, whole | ms | lower |
/// | `proxy.<b>.restore_ms.<S>x<E>` — the `iptables-restore` inside that full sync | ms | lower |
/// | `proxy.<b>.sync_over_restore.<S>x<E>` — full sync ÷ the restore inside it | ratio | lower |
/// | `proxy.<b>.raw_restore_ms.<S>x<E>` — a bare `iptables-restore` of the same text | ms | lower |
/// | `proxy.<b>.cold_sync_ms.<S>x<E>` — a fresh proxier's first sync (one sample) | ms | lower |
/// | `proxy.<b>.endpoint_change_ms.<S>x<E>` — one Endpoints change → rules applied | ms | lower |
/// | `proxy.<b>.endpoint_change_own_ms.<S>x<E>` — of which not the restore | ms | lower |
pub fn figures(backend: &str, results: &[BenchResult]) -> Vec<Figure> {
    let mut f = Vec::new();
    for r in results {
        let case = &r.case;
        let size = format!("{} services × {} endpoints", r.services, r.endpoints_per_service);
        let mut add = |name: &str, label: &str, unit: &'static str, s: Option<machinery::stats::Summary>| {
            if let Some(s) = s.filter(|s| s.median.is_finite()) {
                f.push(Figure::new(format!("proxy.{backend}.{name}.{case}"), format!("{label}, {size}"), unit, s.median, Better::Lower));
            }
        };
        add("own_ms", "full sync: the proxy's own part (rendering, bookkeeping)", "ms", r.own());
        add("full_sync_ms", "full sync", "ms", r.full_sync());
        add("restore_ms", "iptables-restore inside the full sync", "ms", r.restore());
        add("sync_over_restore", "full sync ÷ the iptables-restore inside it", "ratio", r.sync_ratio());
        add("raw_restore_ms", "bare iptables-restore of the same rules", "ms", r.raw_restore());
        add("cold_sync_ms", "cold sync (fresh proxier, with iptables-save)", "ms", rkube_proxy::perf::summary([r.cold_sync_ms]));
        add("endpoint_change_ms", "one endpoint change → rules applied", "ms", r.endpoint_change());
        add("endpoint_change_own_ms", "one endpoint change: the proxy's own part", "ms", r.endpoint_change_own());
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_proxy::perf::SyncTiming;

    fn timing(total_ms: f64, restore_ms: f64) -> SyncTiming {
        SyncTiming { total_ms, restore_ms, own_ms: total_ms - restore_ms, bytes: 1 }
    }

    #[test]
    fn cases_parse() {
        assert_eq!(parse_cases("50x2, 1000x10,").unwrap(), vec![(50, 2), (1000, 10)]);
        assert!(parse_cases("50").is_err());
    }

    #[test]
    fn figures_per_case() {
        let r = BenchResult {
            case: "50x2".into(),
            services: 50,
            endpoints_per_service: 2,
            nat_rules: 405,
            bytes: 1000,
            cold_sync_ms: 30.0,
            full_syncs: vec![timing(12.0, 10.0), timing(11.0, 10.0), timing(15.0, 12.0)],
            raw_restores_ms: vec![9.0, 10.0, 11.0],
            endpoint_changes: vec![timing(4.0, 3.0); 5],
        };
        let f = figures("nft", &[r.clone()]);
        let get = |k: &str| f.iter().find(|x| x.key == k).unwrap_or_else(|| panic!("{k} missing in {f:?}")).value;
        assert_eq!(get("proxy.nft.own_ms.50x2"), 2.0);
        assert_eq!(get("proxy.nft.full_sync_ms.50x2"), 12.0);
        assert_eq!(get("proxy.nft.restore_ms.50x2"), 10.0);
        assert_eq!(get("proxy.nft.raw_restore_ms.50x2"), 10.0);
        assert_eq!(get("proxy.nft.cold_sync_ms.50x2"), 30.0);
        assert_eq!(get("proxy.nft.endpoint_change_ms.50x2"), 4.0);
        assert_eq!(get("proxy.nft.endpoint_change_own_ms.50x2"), 1.0);
        assert_eq!(f.len(), 8);
        assert!(f.iter().all(|x| x.value.is_finite() && x.better == Better::Lower));
        // --reps 0: only the cold sync and the endpoint change.
        let none = BenchResult { full_syncs: vec![], raw_restores_ms: vec![], ..r };
        assert_eq!(figures("nft", &[none]).len(), 3);
    }
}
