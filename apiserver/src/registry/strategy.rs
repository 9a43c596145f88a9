//! The strategy: everything that makes a create, update or delete of one
//! kind different from another's — upstream's `rest.RESTCreateStrategy`,
//! `RESTUpdateStrategy`, `RESTGracefulDeleteStrategy` and the store hooks
//! (`BeginCreate`, `BeginUpdate`, `AfterDelete`), in one trait.
//!
//! The generic store ([`super::store`]) knows no kind: for each request it
//! looks up the resource's strategy once (the table in [`super::kinds`])
//! and calls it at fixed points:
//!
//! ```text
//! create: decode → system fields → set_defaults → mutating admission
//!         → prepare_for_create → validate → validating admission
//!         → canonicalize → begin_create → etcd
//! update: read → compute → subresource reset → prepare_for_update
//!         → set_defaults → validate + validate_update → begin_update
//!         → canonicalize → etcd (CAS)
//! delete: read → before_delete (graceful?) → finalizers → etcd (CAS) → after_delete
//! ```
//!
//! Strategies are trait objects, so a kind the server learns at run time (a
//! CustomResourceDefinition's, with a strategy built from its schema) can be
//! registered without touching the store. Kinds with no rules of their own
//! share [`DefaultStrategy`]; every other kind has its file, named after it
//! (`pod.rs`, `service.rs`, ...).

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::options::DeleteOptions;
use super::subresources::Subresource;
use super::validation::{self, NameRule};
use crate::status::{ApiResult, FieldError};
use crate::storage::etcd::Etcd;

/// A store hook's work (an allocation in etcd, say). Boxed: only the few
/// kinds with hooks pay for it.
pub type Hook<'a, T> = Pin<Box<dyn Future<Output = ApiResult<T>> + Send + 'a>>;

/// Gives back what a `begin_create` hook took, when the object then fails
/// to be stored (upstream's `FinishFunc` called with `success = false`).
pub type Revert = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a kind's delete step made of the object (upstream `BeforeDelete`
/// with the kind's graceful-delete strategy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeforeDelete {
    /// Nothing: the store deletes the object now, or marks it for its
    /// finalizers.
    Nothing,
    /// The object changed (a namespace turned Terminating): the store
    /// marks it deleted and writes it, propagation finalizer included.
    Changed,
    /// Graceful deletion began or shortened: `deletionTimestamp` is now set
    /// `deletionGracePeriodSeconds` ahead. The store writes just that; the
    /// node agent stops the object and deletes it for good.
    Graceful,
    /// Already being deleted gracefully, no sooner than asked: nothing to
    /// write, and the answer is the object as it is.
    AlreadyGraceful,
}

pub trait Strategy: Send + Sync {
    /// How names of this kind are checked (the name function upstream's
    /// `ValidateObjectMeta` is given).
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// The fields `?fieldSelector=` may name besides `metadata.name` and
    /// `metadata.namespace` (upstream `GetAttrs` and the field label
    /// conversion functions).
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// Objects of this kind always carry `metadata.generation`, even when
    /// created without a `spec`; any other object gets one when it is
    /// created with a `spec`.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Fills in what a client left out (upstream `SetDefaults_<Kind>`;
    /// [`super::defaults`]). Runs on every create and update.
    fn set_defaults(&self, _obj: &mut Value) {}

    /// Server-set fields of a new object: its initial status (upstream
    /// `PrepareForCreate`). Runs after mutating admission, so it sees the
    /// object as it will be stored.
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// What a write through `sub` may not change, beyond the subresource's
    /// own rule ([`super::subresources::reset`]) — upstream
    /// `PrepareForUpdate` of the kind's strategy for that subresource.
    fn prepare_for_update(&self, _sub: Subresource, _new: &mut Value, _old: &Value) {}

    /// The kind's validation of an object (upstream `Validate`);
    /// [`validate_object`] adds the metadata checks every kind shares.
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        vec![]
    }

    /// What an update through `sub` may not do (upstream `ValidateUpdate`
    /// of the kind's strategy for that subresource).
    fn validate_update(&self, _sub: Subresource, _new: &Value, _old: &Value) -> Vec<FieldError> {
        vec![]
    }

    /// Normalizes a validated object before it is stored (upstream
    /// `Canonicalize`).
    fn canonicalize(&self, _obj: &mut Value) {}

    /// A PUT of an object that does not exist creates it (upstream
    /// `AllowCreateOnUpdate`). rkube's kinds all answer 404 instead.
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// The kind's step of a delete, before finalizers and propagation
    /// (upstream `CheckGracefulDelete`, and a namespace's Terminating phase).
    fn before_delete(&self, _obj: &mut Value, _opts: &DeleteOptions) -> BeforeDelete {
        BeforeDelete::Nothing
    }

    /// No finalizer holds the object any more (a deleted object with none
    /// left is removed).
    fn finalizers_empty(&self, obj: &Value) -> bool {
        super::meta::finalizers_empty(obj)
    }

    /// `BeginCreate`: takes what a new object holds outside itself (a
    /// Service's ClusterIP and NodePorts), writing it into `obj`.
    fn begin_create<'a>(&'a self, _etcd: &'a Etcd, _obj: &'a mut Value) -> Option<Hook<'a, Revert>> {
        None
    }

    /// `BeginUpdate`: the same for an update of the object itself.
    fn begin_update<'a>(&'a self, _etcd: &'a Etcd, _new: &'a mut Value, _old: &'a Value) -> Option<Hook<'a, ()>> {
        None
    }

    /// `AfterDelete`: gives back what the deleted object held.
    fn after_delete<'a>(&'a self, _etcd: &'a Etcd, _obj: &'a Value) -> Option<Hook<'a, ()>> {
        None
    }
}

/// The kinds with no rules of their own (Endpoints, LimitRange,
/// ResourceQuota, ServiceAccount, Lease): every default above.
pub struct DefaultStrategy;

impl Strategy for DefaultStrategy {}

/// Validation of an object on create and on update: the metadata every
/// kind shares (its name by the kind's rule, labels), then the kind's own.
pub fn validate_object(strategy: &dyn Strategy, obj: &Value) -> Vec<FieldError> {
    let mut errs = validation::object_meta(obj, strategy.name_rule());
    errs.extend(strategy.validate(obj));
    errs
}
