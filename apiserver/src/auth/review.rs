//! Access reviews: asking the authorizer a question through the API
//! (authorization.k8s.io/v1 SubjectAccessReview and SelfSubjectAccessReview).
//!
//! `kubectl auth can-i delete pods` POSTs a SelfSubjectAccessReview — "may
//! *I* do this?" — and prints yes or no from `status.allowed`. A
//! SubjectAccessReview asks the same about any user (and needs permission to
//! create subjectaccessreviews). Both are never stored: the apiserver
//! evaluates the spec with its authorizer and returns the object with a
//! `status`.
//!
//! The pipeline passes the authorizer in as a closure, so these functions
//! stay pure.

use serde_json::{json, Value};

use super::attributes::{Attributes, Decision};
use super::UserInfo;

/// A review that fails validation: the apiserver answers 422 with
/// `<Kind>.authorization.k8s.io "" is invalid: <field>: Invalid value: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidReview {
    pub kind: &'static str,
    /// `(field path, detail)`, e.g. `("spec.user", "at least one of user or group must be specified")`.
    pub causes: Vec<(String, String)>,
    pub message: String,
}

fn invalid(kind: &'static str, causes: Vec<(String, String)>) -> InvalidReview {
    let list: Vec<String> = causes.iter().map(|(f, d)| format!("{f}: Invalid value: {d}")).collect();
    let joined = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
    InvalidReview { kind, message: format!("{kind}.authorization.k8s.io \"\" is invalid: {joined}"), causes }
}

/// The request attributes a review spec describes.
fn spec_attributes(kind: &'static str, spec: &Value) -> Result<Attributes, InvalidReview> {
    let res = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match (res, non) {
        (Some(_), Some(_)) => Err(invalid(
            kind,
            vec![("spec.nonResourceAttributes".into(), "cannot be specified in combination with resourceAttributes".into())],
        )),
        (None, None) => Err(invalid(
            kind,
            vec![(
                "spec.resourceAttributes".into(),
                "exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
            )],
        )),
        (Some(r), None) => Ok(Attributes {
            verb: s(r, "verb"),
            resource_request: true,
            api_group: s(r, "group"),
            api_version: s(r, "version"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            namespace: s(r, "namespace"),
            name: s(r, "name"),
            ..Default::default()
        }),
        (None, Some(n)) => Ok(Attributes::non_resource(&s(n, "verb"), &s(n, "path"))),
    }
}

fn with_status(review: &Value, kind: &str, decision: &Decision) -> Value {
    let mut out = review.clone();
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!(kind);
    if out.get("metadata").map_or(true, Value::is_null) {
        out["metadata"] = json!({});
    }
    let mut status = json!({ "allowed": decision.is_allowed() });
    if matches!(decision, Decision::Deny(_)) {
        status["denied"] = json!(true);
    }
    if !decision.reason().is_empty() {
        status["reason"] = json!(decision.reason());
    }
    out["status"] = status;
    out
}

/// Evaluates a SubjectAccessReview: the spec names the user (`user`,
/// `groups`, `uid`, `extra`) and the request; returns the review with its
/// `status`. At least one of user or groups is required.
pub fn subject_access_review(
    review: &Value,
    authorize: &dyn Fn(&UserInfo, &Attributes) -> Decision,
) -> Result<Value, InvalidReview> {
    const KIND: &str = "SubjectAccessReview";
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let attrs = spec_attributes(KIND, &spec)?;
    let user_name = spec.get("user").and_then(Value::as_str).unwrap_or("");
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if user_name.is_empty() && groups.is_empty() {
        return Err(invalid(KIND, vec![("spec.user".into(), "\"\": at least one of user or group must be specified".into())]));
    }
    let extra = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let vals = v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
                    (k.clone(), vals)
                })
                .collect()
        })
        .unwrap_or_default();
    let user = UserInfo {
        name: user_name.to_string(),
        uid: spec.get("uid").and_then(Value::as_str).unwrap_or("").to_string(),
        groups,
        extra,
    };
    Ok(with_status(review, KIND, &authorize(&user, &attrs)))
}

/// Evaluates a SelfSubjectAccessReview for the requesting user.
pub fn self_subject_access_review(
    review: &Value,
    requester: &UserInfo,
    authorize: &dyn Fn(&UserInfo, &Attributes) -> Decision,
) -> Result<Value, InvalidReview> {
    const KIND: &str = "SelfSubjectAccessReview";
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let attrs = spec_attributes(KIND, &spec)?;
    Ok(with_status(review, KIND, &authorize(requester, &attrs)))
}

#[cfg(test)]
mod tests {
    use super::super::{bootstrap, Authorizer, AuthorizationMode, AuthzContext};
    use super::*;

    fn authorizer() -> impl Fn(&UserInfo, &Attributes) -> Decision {
        let mut data = bootstrap::rbac_data();
        data.upsert_json(&json!({"kind": "Role", "metadata": {"namespace": "dev", "name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}))
            .unwrap();
        data.upsert_json(&json!({"kind": "RoleBinding", "metadata": {"namespace": "dev", "name": "jane-reads"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "jane"}]}))
            .unwrap();
        move |u: &UserInfo, a: &Attributes| {
            let no_pods = |_: &str, _: &str| None;
            let ctx = AuthzContext { rbac: &data, pod_node: &no_pods };
            Authorizer::new(vec![AuthorizationMode::Node, AuthorizationMode::Rbac]).authorize(u, a, &ctx)
        }
    }

    fn check_self(user: &UserInfo, spec: Value, expected: Result<bool, &str>) {
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": spec});
        let auth = authorizer();
        match (self_subject_access_review(&review, user, &auth), expected) {
            (Ok(out), Ok(allowed)) => {
                assert_eq!(out["status"]["allowed"], allowed, "{out}");
                assert_eq!(out["kind"], "SelfSubjectAccessReview");
                assert_eq!(out["spec"], review["spec"]);
            }
            (Err(e), Err(msg)) => assert_eq!(e.message, msg),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn kubectl_auth_can_i() {
        let jane = UserInfo::new("jane", &["dev"]).with_authenticated_group();
        check_self(&jane, json!({"resourceAttributes": {"namespace": "dev", "verb": "list", "resource": "pods"}}), Ok(true));
        check_self(&jane, json!({"resourceAttributes": {"namespace": "dev", "verb": "delete", "resource": "pods"}}), Ok(false));
        check_self(&jane, json!({"resourceAttributes": {"namespace": "prod", "verb": "list", "resource": "pods"}}), Ok(false));
        check_self(&jane, json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}), Ok(true));
        check_self(&jane, json!({"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}), Ok(false));
        check_self(
            &jane,
            json!({}),
            Err(r#"SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified"#),
        );
        check_self(
            &jane,
            json!({"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"path": "/", "verb": "get"}}),
            Err(r#"SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.nonResourceAttributes: Invalid value: cannot be specified in combination with resourceAttributes"#),
        );
    }

    #[test]
    fn subject_access_reviews() {
        let auth = authorizer();
        let sar = |spec: Value| {
            subject_access_review(&json!({"kind": "SubjectAccessReview", "spec": spec}), &auth)
        };
        let out = sar(json!({"user": "jane", "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods", "name": "web"}})).unwrap();
        assert_eq!(out["status"]["allowed"], true);
        assert_eq!(out["status"]["reason"], r#"RBAC: allowed by RoleBinding "jane-reads/dev" of Role "pod-reader" to User "jane""#);
        let out = sar(json!({"groups": ["system:masters"], "resourceAttributes": {"verb": "delete", "resource": "nodes"}})).unwrap();
        assert_eq!(out["status"]["allowed"], true);
        let out = sar(json!({"user": "bob", "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"}})).unwrap();
        assert_eq!(out["status"], json!({"allowed": false}));
        // Node identities go through the Node authorizer too.
        let out = sar(json!({"user": "system:node:n1", "groups": ["system:nodes"],
            "resourceAttributes": {"verb": "update", "resource": "nodes", "subresource": "status", "name": "n2"}})).unwrap();
        assert_eq!(out["status"]["allowed"], false);
        assert_eq!(out["status"]["reason"], r#"node "n1" is not allowed to modify node "n2""#);
        let err = sar(json!({"resourceAttributes": {"verb": "get", "resource": "pods"}})).unwrap_err();
        assert_eq!(
            err.message,
            r#"SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": at least one of user or group must be specified"#
        );
    }
}
