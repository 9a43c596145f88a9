//! `rkube bench proxy`: full sync time for N services × E endpoints next to
//! the raw `iptables-restore` of the same rules, and the time from one
//! endpoint change to rules applied — inside a throwaway network namespace
//! (never the host's tables; needs root).

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Cases as SERVICESxENDPOINTS, comma-separated.
    #[arg(long, default_value = "1000x2,1000x10,5000x2,10000x2")]
    pub cases: String,
    /// Repetitions of the full-sync and raw-restore measurements (0 skips them).
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    /// iptables build to drive: system (whatever `iptables-restore` is),
    /// nft or legacy.
    #[arg(long, default_value = "system")]
    pub backend: rkube_proxy::iptables::Backend,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let mut cases = Vec::new();
    for c in o.cases.split(',').filter(|c| !c.is_empty()) {
        let (s, e) = c.split_once('x').ok_or_else(|| anyhow::anyhow!("case {c:?}: want SERVICESxENDPOINTS"))?;
        cases.push((s.trim().parse()?, e.trim().parse()?));
    }
    let results = rkube_proxy::perf::bench(&cases, o.reps, o.backend)?;
    println!("iptables backend: {}", o.backend);
    println!("{}", rkube_proxy::perf::format_results(&results));
    Ok(())
}
