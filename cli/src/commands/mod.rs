pub mod bench;
pub mod bench_apiserver;
pub mod certs;
