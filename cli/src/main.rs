//! Thin binary: parse the command line, run the chosen subcommand.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = rkube_cli::Cli::parse();
    match rkube_cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rkube: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
