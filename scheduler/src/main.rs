//! Thin binary; the component lives in the library.
fn main() -> std::process::ExitCode {
    eprintln!("rkube-scheduler: not implemented yet (see its issue); this binary does nothing.");
    std::process::ExitCode::from(1)
}
