pub mod bench;
pub mod bench_apiserver;
