fn main() -> std::process::ExitCode {
    eprintln!("rkube: not implemented yet");
    std::process::ExitCode::from(1)
}
