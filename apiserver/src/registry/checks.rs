//! What the handler hands the store with every write: the admission stages
//! and the checks that depend on who is asking.
//!
//! kube-apiserver's handler runs mutating admission itself and then calls
//! `Store.Create(ctx, obj, createValidation)` or `Store.Update(ctx, ...,
//! updateValidation)`: the validating half reaches the store as functions
//! it calls at the point their answer is needed. Here that contract is one
//! trait, defined on the registry's side so the registry never depends on
//! the code that implements it (`security.rs`: the admission chain wired to
//! the watch cache, RBAC escalation prevention for the requesting user).
//!
//! The store is generic over it (no boxed futures on the request path).

use std::future::Future;

use serde_json::Value;

use crate::request::RequestInfo;
use crate::status::ApiResult;

pub trait WriteChecks: Sync {
    /// What mutating admission read that validating admission uses again
    /// (the namespace's LimitRanges, ResourceQuotas, ServiceAccount).
    type Admitted: Send;

    /// Mutating admission of a create, on the decoded and defaulted object:
    /// NamespaceLifecycle, the mutating plugins (which may change `obj`),
    /// then the authorization checks of the write itself (RBAC escalation
    /// prevention) — upstream's order, all before validation.
    fn admit_create(&self, ri: &RequestInfo, obj: &mut Value) -> impl Future<Output = ApiResult<Self::Admitted>> + Send;

    /// Validating admission of a create (`createValidation`), after the
    /// strategy has validated `obj`. A quota charge it decides is written
    /// unless `dry_run`.
    fn validate_create(&self, ri: &RequestInfo, admitted: Self::Admitted, obj: &Value, dry_run: bool) -> impl Future<Output = ApiResult<()>> + Send;

    /// The checks of an update (`updateValidation`), run in every round of
    /// the GuaranteedUpdate loop on the object that round would write.
    fn validate_update(&self, ri: &RequestInfo, new: &Value, old: &Value) -> ApiResult<()>;

    /// Admission of a delete, before anything is read.
    fn admit_delete(&self, ri: &RequestInfo) -> ApiResult<()>;
}
