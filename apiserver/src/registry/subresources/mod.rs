//! Subresources: the parts of an object a request may address on their
//! own (`pods/<name>/status`, `deployments/<name>/scale`, ...), and what a
//! write through each may change.
//!
//! Upstream gives each one its own REST storage: a copy of the resource's
//! store with another strategy (`status`, `ephemeralcontainers`,
//! `finalize`), or a small REST of its own (`binding`, `eviction`,
//! `scale`: [`super::rest`], handlers above the store). Here the store
//! takes the [`Subresource`] a write goes through as an explicit argument;
//! what it may change is decided by [`reset`] (the generic part, one file
//! per subresource) and then by the kind's strategy. This module imports
//! neither the store nor the handlers: the store applies it.
//!
//! - [`status`]: a status write changes only `status`; a write to the
//!   resource itself keeps the stored `status`.
//! - [`ephemeral_containers`]: `kubectl debug` adds ephemeral containers.
//! - [`finalize`]: a namespace's `spec.finalizers`.

pub mod ephemeral_containers;
pub mod finalize;
pub mod status;

use machinery::resources::ResourceInfo;
use serde_json::Value;

use crate::status::ApiError;

/// The part of an object a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// The object itself.
    Main,
    Status,
    Scale,
    Binding,
    Eviction,
    EphemeralContainers,
    Finalize,
}

impl Subresource {
    /// The subresource of a request's URL. Anything else the URL may name
    /// (`log`, `exec`, `proxy`, ...) is served by the node proxy, not here.
    pub fn parse(sub: Option<&str>) -> Result<Self, ApiError> {
        Ok(match sub {
            None => Subresource::Main,
            Some("status") => Subresource::Status,
            Some("scale") => Subresource::Scale,
            Some("binding") => Subresource::Binding,
            Some("eviction") => Subresource::Eviction,
            Some("ephemeralcontainers") => Subresource::EphemeralContainers,
            Some("finalize") => Subresource::Finalize,
            Some(_) => return Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
        })
    }
}

/// What a write through `sub` may change (the generic half of upstream's
/// `PrepareForUpdate`): everything else is put back as it is stored.
pub fn reset(sub: Subresource, r: &ResourceInfo, new: &mut Value, old: &Value) {
    match sub {
        Subresource::Status => status::keep_only_status(new, old),
        Subresource::EphemeralContainers => ephemeral_containers::keep_only_ephemeral_containers(new, old),
        Subresource::Finalize => finalize::keep_only_finalizers(new, old),
        // The binding's own change (spec.nodeName and the PodScheduled
        // condition) is made on the stored object: nothing to put back.
        Subresource::Binding => {}
        // A scale writes the resource's spec.replicas; an eviction never
        // updates (it deletes).
        Subresource::Main | Subresource::Scale | Subresource::Eviction => status::keep_stored_status(r, new, old),
    }
}
