//! Thin binary; the component lives in the library ([`rkube_scheduler::scheduler`]).
use clap::Parser;

// Many short-lived allocations per pod (watch decoding, binding requests);
// mimalloc handles them more cheaply than glibc malloc (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let opts = rkube_scheduler::options::Options::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(rkube_scheduler::scheduler::run(opts)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkube-scheduler: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
