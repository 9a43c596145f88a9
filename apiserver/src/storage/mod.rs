//! Storage: etcd access (`etcd`) and the watch cache in front of it (`cache`).
//! Only this module talks to etcd — in the whole of rkube.

pub mod cache;
pub mod etcd;
