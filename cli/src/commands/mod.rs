pub mod bench;
pub mod bench_apiserver;
pub mod certs;
pub mod down;
pub mod logs;
pub mod status;
pub mod up;
