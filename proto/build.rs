//! Generates the CRI v1 (`runtime.v1`) messages and gRPC stubs from `cri/api.proto`.
//!
//! prost-build needs the `protoc` binary. It comes from the
//! `protoc-bin-vendored` crate, never from Debian's `protobuf-compiler`:
//! cargo fetches it like any other dependency, so `cargo build` works on a
//! fresh machine with no system package and no install step outside cargo.
//! Inside this workspace `.cargo/config.toml` sets `PROTOC` to
//! `scripts/protoc`, which runs that same vendored binary — that is how
//! etcd-client's build script, which only reads `PROTOC`, gets one too.
//! Built from elsewhere (no config), this script points `PROTOC` at the
//! vendored binary itself. An explicit `PROTOC` always wins.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // Build scripts are single-threaded here; setting the variable for
        // prost-build (which reads PROTOC) is the documented way to pass it.
        std::env::set_var("PROTOC", protoc);
    }
    println!("cargo:rerun-if-changed=cri/api.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    tonic_build::configure()
        // Client for the agent; server so tests can stand up fake runtimes.
        .build_client(true)
        .build_server(true)
        .compile_protos(&["cri/api.proto"], &["cri"])?;
    Ok(())
}
