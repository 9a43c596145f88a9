//! rkube-controller: the controller manager. Thin binary; the component
//! lives in the library (`rkube_controller::manager`).
use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let opts = rkube_controller::options::Options::parse();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    match rt.block_on(rkube_controller::manager::run(opts)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkube-controller: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
