//! Helpers for end-to-end tests: start etcd, apiserver, etc. on free ports.
