//! Sync benchmark: `cargo run --release -p rkube-proxy --example bench [--quick] [--reps N] [--cases 1000x2,5000x2]`
//! (`--reps 0` skips the repeated full syncs and raw restores: only the
//! cold sync and the endpoint-change latency are measured)
//! (root; runs in throwaway network namespaces).
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    // `--cases 5000x2,10000x2` picks cases; default: all of the issue's.
    let picked: Option<Vec<(usize, usize)>> = args.iter().position(|a| a == "--cases").and_then(|i| args.get(i + 1)).map(|s| {
        s.split(',')
            .filter_map(|c| c.split_once('x'))
            .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .collect()
    });
    let cases: Vec<(usize, usize)> = match picked {
        Some(c) => c,
        None if quick => vec![(1000, 2), (1000, 10)],
        None => vec![(1000, 2), (1000, 10), (5000, 2), (5000, 10), (10000, 2), (10000, 10)],
    };
    let results = rkube_proxy::perf::bench(&cases, reps)?;
    print!("{}", rkube_proxy::perf::format_results(&results));
    Ok(())
}
