//! The subresources served by a REST handler of their own, above the
//! store: each takes a body of its own kind — a `Binding`, an `Eviction`,
//! a `Scale` — and turns it into a write of the object through the
//! generic store ([`super::store`]), which knows none of them. Upstream
//! keeps these beside each resource's storage: `BindingREST` and
//! `EvictionREST` (pkg/registry/core/pod/storage), `ScaleREST`
//! (pkg/registry/apps/deployment/storage, .../replicaset/storage).
//!
//! - [`binding`]: the scheduler's `pods/<name>/binding`.
//! - [`eviction`]: `kubectl drain`'s `pods/<name>/eviction`.
//! - [`scale`]: the autoscaling/v1 `Scale` view of a workload.
//!
//! What a write through any subresource may change of the stored object
//! is not decided here but in [`super::subresources`], which the store
//! applies to every update.

pub mod binding;
pub mod eviction;
pub mod scale;
