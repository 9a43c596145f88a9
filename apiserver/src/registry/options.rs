//! The options a request carries to the store: its query parameters, how
//! strictly unknown fields are treated, and a delete's options
//! (upstream's `metav1.CreateOptions`/`UpdateOptions`/`DeleteOptions`).

use serde_json::{json, Value};

use crate::status::{ApiError, ApiResult};

/// Query parameters, decoded once.
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        Query(form_urlencoded::parse(q.unwrap_or("").as_bytes()).into_owned().collect())
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    pub fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// How strictly unknown fields are treated (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn from_query(q: &Query) -> ApiResult<Self> {
        match q.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}. Must be one of Ignore, Warn, Strict"
            ))),
        }
    }
}

/// `?force=` belongs to server-side apply: any other patch that sends it
/// is refused (upstream `ValidatePatchOptions`).
pub fn forbid_force(q: &Query) -> ApiResult<()> {
    if q.get("force").is_some() {
        return Err(ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"));
    }
    Ok(())
}

/// A delete's options, from the query and the `DeleteOptions` body.
pub struct DeleteOptions {
    /// `gracePeriodSeconds`: what a kind with graceful deletion waits.
    pub grace_period: Option<i64>,
    /// `propagationPolicy` (or the deprecated `orphanDependents`).
    pub propagation: Option<String>,
    /// `preconditions.uid` and `preconditions.resourceVersion`.
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn from(q: &Query, body: Option<&Value>) -> ApiResult<Self> {
        let empty = json!({});
        let b = body.unwrap_or(&empty);
        let grace = match (b["gracePeriodSeconds"].as_i64(), q.get("gracePeriodSeconds")) {
            (Some(g), _) => Some(g),
            (None, Some(s)) => Some(s.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {s:?}")))?),
            _ => None,
        };
        let mut propagation = b["propagationPolicy"].as_str().map(str::to_string).or_else(|| q.get("propagationPolicy").map(str::to_string));
        // The deprecated orphanDependents flag means the same as Orphan.
        if propagation.is_none() {
            if b["orphanDependents"] == json!(true) || q.get("orphanDependents") == Some("true") {
                propagation = Some("Orphan".into());
            }
        }
        Ok(DeleteOptions {
            grace_period: grace,
            propagation,
            uid: b["preconditions"]["uid"].as_str().map(str::to_string),
            resource_version: b["preconditions"]["resourceVersion"].as_str().map(str::to_string),
            dry_run: q.dry_run() || b["dryRun"].as_array().is_some_and(|a| a.iter().any(|x| x == "All")),
        })
    }
}
