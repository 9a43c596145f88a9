//! Thin binary: parse flags, run the library.
use clap::Parser;

// Each request parses, defaults, validates and serialises JSON trees of
// hundreds of small allocations; mimalloc's thread-local free lists make
// that markedly cheaper than glibc malloc (see docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = rkube_apiserver::Config::parse();
    match rkube_apiserver::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkube-apiserver: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
