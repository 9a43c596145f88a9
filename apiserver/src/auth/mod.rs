//! Authentication and authorization: who is asking, and may they?
//!
//! kube-apiserver runs every request through two filters before it reaches
//! a handler:
//!
//! 1. **Authentication** turns credentials into a [`UserInfo`]: a verified
//!    client certificate ([`x509`]: user = subject CN, groups = O) or a
//!    bearer token ([`token`], the static `--token-auth-file`). A request
//!    that presents nothing is `system:anonymous`; one that presents
//!    something invalid is rejected with 401 ([`authenticate`]).
//! 2. **Authorization** asks the configured authorizers in order
//!    (`--authorization-mode=Node,RBAC`), each answering allow, deny or "no
//!    opinion" ([`Decision`]); the first allow or deny wins, and if nobody
//!    allows, the request is refused with 403 and a message in Kubernetes'
//!    exact words ([`forbidden`]). [`rbac`] evaluates Roles and bindings,
//!    [`node`] confines kubelets to their own node, and [`bootstrap`] holds
//!    the roles and bindings a cluster starts with.
//!
//! Everything here is pure: functions over a user, the request's
//! [`Attributes`] and the current RBAC objects. The request pipeline feeds
//! them from the watch cache.
//!
//! This file chains the authenticators and the authorizers: it calls
//! them. What they share lives in leaves they import instead —
//! [`attributes`] ([`Attributes`] and [`Decision`], upstream's `authorizer`
//! package), [`aggregate`] (several errors as one message), [`user`].

pub mod aggregate;
pub mod attributes;

pub mod bootstrap;
pub mod escalation;
pub mod node;
pub mod rbac;
pub mod review;
pub mod token;
pub mod user;
pub mod x509;

pub use attributes::{Attributes, Decision};
pub use rbac::RbacData;
pub use user::UserInfo;

use serde_json::{json, Value};

use aggregate::aggregate_errors;

/// `--authorization-mode` values rkube implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    AlwaysAllow,
    AlwaysDeny,
    Node,
    Rbac,
}

impl AuthorizationMode {
    pub fn name(self) -> &'static str {
        match self {
            AuthorizationMode::AlwaysAllow => "AlwaysAllow",
            AuthorizationMode::AlwaysDeny => "AlwaysDeny",
            AuthorizationMode::Node => "Node",
            AuthorizationMode::Rbac => "RBAC",
        }
    }
}

/// Parses `--authorization-mode=Node,RBAC` (comma separated, case
/// sensitive, no repeats), as kube-apiserver validates it.
pub fn parse_authorization_modes(flag: &str) -> Result<Vec<AuthorizationMode>, String> {
    let mut modes = Vec::new();
    for part in flag.split(',').map(str::trim) {
        let mode = match part {
            "AlwaysAllow" => AuthorizationMode::AlwaysAllow,
            "AlwaysDeny" => AuthorizationMode::AlwaysDeny,
            "Node" => AuthorizationMode::Node,
            "RBAC" => AuthorizationMode::Rbac,
            "ABAC" | "Webhook" => {
                return Err(format!("authorization-mode {part:?} is not implemented by rkube (use AlwaysAllow, AlwaysDeny, Node, RBAC)"))
            }
            _ => return Err(format!("authorization-mode {part:?} is not a valid mode (valid: AlwaysAllow, AlwaysDeny, Node, RBAC)")),
        };
        if modes.contains(&mode) {
            return Err(format!("authorization-mode {part:?} has mode specified more than once"));
        }
        modes.push(mode);
    }
    if modes.is_empty() {
        return Err("at least one authorization-mode must be passed".into());
    }
    Ok(modes)
}

/// What the authorizers read besides the request: the RBAC objects, and a
/// way to find the node a pod is bound to (for the Node authorizer).
pub struct AuthzContext<'a> {
    pub rbac: &'a RbacData,
    /// `(namespace, pod name) -> spec.nodeName` (None: no such pod, or unbound).
    pub pod_node: &'a dyn Fn(&str, &str) -> Option<String>,
}

/// The union authorizer: the privileged group first (as kube-apiserver
/// always adds it), then the configured modes in order.
#[derive(Debug, Clone)]
pub struct Authorizer {
    pub modes: Vec<AuthorizationMode>,
}

impl Authorizer {
    pub fn new(modes: Vec<AuthorizationMode>) -> Self {
        Authorizer { modes }
    }

    pub fn authorize(&self, user: &UserInfo, attrs: &Attributes, ctx: &AuthzContext<'_>) -> Decision {
        // `system:masters` may do anything, even when RBAC objects are broken.
        if user.in_group(user::SYSTEM_PRIVILEGED_GROUP) {
            return Decision::Allow(String::new());
        }
        let mut reasons: Vec<String> = Vec::new();
        for mode in &self.modes {
            let d = match mode {
                AuthorizationMode::AlwaysAllow => Decision::Allow(String::new()),
                AuthorizationMode::AlwaysDeny => Decision::Deny("Everything is forbidden.".into()),
                AuthorizationMode::Node => node::authorize(user, attrs, ctx.pod_node),
                AuthorizationMode::Rbac => rbac::authorize(user, attrs, ctx.rbac),
            };
            match d {
                Decision::NoOpinion(r) => {
                    if !r.is_empty() {
                        reasons.push(r);
                    }
                }
                other => return other,
            }
        }
        // The union authorizer joins the reasons of those that had no opinion.
        Decision::NoOpinion(reasons.join("\n"))
    }
}

/// The 403 for a refused request, as `responsewriters.ForbiddenStatusError`
/// builds it. Render with [`Forbidden::status`], or hand the parts to the
/// apiserver's own error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The whole message: `pods "web" is forbidden: User "bob" cannot get ...`.
    pub message: String,
    /// For `details`: the request's group, resource and name.
    pub group: String,
    pub resource: String,
    pub name: String,
}

impl Forbidden {
    /// The `meta.k8s.io/v1` Status body.
    pub fn status(&self) -> Value {
        let mut details = json!({ "kind": self.resource });
        if !self.name.is_empty() {
            details["name"] = json!(self.name);
        }
        if !self.group.is_empty() {
            details["group"] = json!(self.group);
        }
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": "Forbidden",
            "details": details,
            "code": 403,
        })
    }
}

/// `User "bob" cannot list resource "pods" in API group "" in the namespace "dev"`
/// (responsewriters.forbiddenMessage).
pub fn forbidden_message(user: &UserInfo, attrs: &Attributes) -> String {
    if !attrs.resource_request {
        return format!("User {:?} cannot {} path {:?}", user.name, attrs.verb, attrs.path);
    }
    let resource = attrs.combined_resource();
    if !attrs.namespace.is_empty() {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            user.name, attrs.verb, resource, attrs.api_group, attrs.namespace
        )
    } else {
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            user.name, attrs.verb, resource, attrs.api_group
        )
    }
}

/// The full 403: `<resource>[.<group>] ["<name>"] is forbidden: <message>[: <reason>]`
/// (`apierrors.NewForbidden` around `forbiddenMessage`; a non-resource
/// request reads `forbidden: User "x" cannot get path "/metrics"`).
pub fn forbidden(user: &UserInfo, attrs: &Attributes, reason: &str) -> Forbidden {
    let mut why = forbidden_message(user, attrs);
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    let qualified = if attrs.api_group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.api_group)
    };
    let message = if attrs.resource.is_empty() && attrs.api_group.is_empty() {
        format!("forbidden: {why}")
    } else if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {:?} is forbidden: {why}", attrs.name)
    };
    Forbidden { message, group: attrs.api_group.clone(), resource: attrs.resource.clone(), name: attrs.name.clone() }
}

/// Why authentication failed: the response is always Kubernetes' plain
/// `401 Unauthorized`; [`Unauthorized::reason`] is for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthorized {
    pub reason: String,
}

impl Unauthorized {
    /// The Status body kube-apiserver sends with 401.
    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        })
    }
}

/// The authentication chain for one request.
///
/// - `client_cert`: the user from the verified peer certificate
///   ([`x509::user_from_certificate`]), if the client presented one.
/// - `authorization`: the raw `Authorization` header, if any.
/// - `tokens`: the `--token-auth-file`, if configured.
///
/// As kube-apiserver's union authenticator: the first credential that
/// authenticates wins (certificate, then token); a credential that was
/// presented but is invalid gives 401 when nothing else authenticated;
/// nothing presented at all gives `system:anonymous` when
/// `anonymous_enabled` (the default), else 401. Authenticated users get
/// `system:authenticated` added.
pub fn authenticate(
    client_cert: Option<Result<UserInfo, x509::X509Error>>,
    authorization: Option<&[u8]>,
    tokens: Option<&token::TokenFile>,
    anonymous_enabled: bool,
) -> Result<UserInfo, Unauthorized> {
    let mut errors: Vec<String> = Vec::new();
    match client_cert {
        Some(Ok(user)) => return Ok(user.with_authenticated_group()),
        Some(Err(e)) => errors.push(e.to_string()),
        None => {}
    }
    match token::authenticate_header(authorization, tokens) {
        token::TokenAuth::User(user) => return Ok(user.with_authenticated_group()),
        token::TokenAuth::Invalid(reason) => errors.push(reason),
        token::TokenAuth::NotPresented => {}
    }
    if !errors.is_empty() {
        return Err(Unauthorized { reason: aggregate_errors(&errors) });
    }
    if anonymous_enabled {
        Ok(UserInfo::anonymous())
    } else {
        Err(Unauthorized { reason: "no credentials presented and anonymous requests are disabled".into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_forbidden(user: &str, attrs: Attributes, reason: &str, expected: &str) {
        let f = forbidden(&UserInfo::new(user, &[]), &attrs, reason);
        assert_eq!(f.message, expected);
    }

    #[test]
    fn forbidden_messages_match_kubernetes() {
        // The seed's anonymous curl.
        check_forbidden(
            "system:anonymous",
            Attributes::resource("list", "", "namespaces", "", ""),
            "",
            r#"namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" in API group "" at the cluster scope"#,
        );
        check_forbidden(
            "bob",
            Attributes::resource("get", "", "pods", "dev", "web"),
            "",
            r#"pods "web" is forbidden: User "bob" cannot get resource "pods" in API group "" in the namespace "dev""#,
        );
        check_forbidden(
            "bob",
            Attributes::resource("get", "", "pods", "dev", "web").with_subresource("log"),
            "",
            r#"pods "web" is forbidden: User "bob" cannot get resource "pods/log" in API group "" in the namespace "dev""#,
        );
        check_forbidden(
            "bob",
            Attributes::resource("create", "apps", "deployments", "dev", ""),
            "",
            r#"deployments.apps is forbidden: User "bob" cannot create resource "deployments" in API group "apps" in the namespace "dev""#,
        );
        check_forbidden(
            "bob",
            Attributes::non_resource("get", "/metrics"),
            "",
            r#"forbidden: User "bob" cannot get path "/metrics""#,
        );
        check_forbidden(
            "bob",
            Attributes::resource("list", "", "pods", "dev", ""),
            r#"RBAC: role.rbac.authorization.k8s.io "gone" not found"#,
            r#"pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "dev": RBAC: role.rbac.authorization.k8s.io "gone" not found"#,
        );
    }

    #[test]
    fn forbidden_status_body() {
        let f = forbidden(&UserInfo::new("bob", &[]), &Attributes::resource("get", "apps", "deployments", "d", "web"), "");
        let s = f.status();
        assert_eq!(s["code"], 403);
        assert_eq!(s["reason"], "Forbidden");
        assert_eq!(s["details"], json!({"name": "web", "group": "apps", "kind": "deployments"}));
    }

    fn check_modes(flag: &str, expected: Result<Vec<AuthorizationMode>, &str>) {
        match (parse_authorization_modes(flag), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{flag}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{flag}: {got}"),
            (got, want) => panic!("{flag}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn authorization_mode_flag() {
        use AuthorizationMode::*;
        check_modes("RBAC", Ok(vec![Rbac]));
        check_modes("Node,RBAC", Ok(vec![Node, Rbac]));
        check_modes("AlwaysAllow", Ok(vec![AlwaysAllow]));
        check_modes("rbac", Err("not a valid mode"));
        check_modes("RBAC,RBAC", Err("more than once"));
        check_modes("Webhook", Err("not implemented"));
    }

    #[test]
    fn chain_order_and_privileged_group() {
        use AuthorizationMode::*;
        let data = RbacData::new();
        let no_pods = |_: &str, _: &str| None;
        let ctx = AuthzContext { rbac: &data, pod_node: &no_pods };
        let attrs = Attributes::resource("delete", "", "nodes", "", "n1");
        let bob = UserInfo::new("bob", &["system:authenticated"]);
        let root = UserInfo::new("root", &["system:masters"]);

        assert!(!Authorizer::new(vec![Rbac]).authorize(&bob, &attrs, &ctx).is_allowed());
        assert!(Authorizer::new(vec![Rbac]).authorize(&root, &attrs, &ctx).is_allowed());
        assert!(Authorizer::new(vec![Rbac, AlwaysAllow]).authorize(&bob, &attrs, &ctx).is_allowed());
        // A deny stops the chain.
        assert!(matches!(
            Authorizer::new(vec![AlwaysDeny, AlwaysAllow]).authorize(&bob, &attrs, &ctx),
            Decision::Deny(_)
        ));
    }

    fn check_authn(
        cert: Option<Result<UserInfo, x509::X509Error>>,
        header: Option<&[u8]>,
        anonymous: bool,
        expected: Result<(&str, &[&str]), &str>,
    ) {
        let tokens = token::TokenFile::parse("s3cret,alice,1001,\"dev,ops\"\n", "tokens.csv").unwrap();
        let got = authenticate(cert, header, Some(&tokens), anonymous);
        match (got, expected) {
            (Ok(u), Ok((name, groups))) => {
                assert_eq!(u.name, name);
                assert_eq!(u.groups, groups.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            }
            (Err(e), Err(reason)) => {
                assert!(e.reason.contains(reason), "{} !~ {}", e.reason, reason);
                assert_eq!(e.status()["code"], 401);
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn authentication_chain() {
        let cert_user = UserInfo::new("carol", &["admins"]);
        check_authn(None, None, true, Ok(("system:anonymous", &["system:unauthenticated"])));
        check_authn(None, None, false, Err("anonymous requests are disabled"));
        check_authn(None, Some(b"Bearer s3cret"), true, Ok(("alice", &["dev", "ops", "system:authenticated"])));
        check_authn(None, Some(b"Bearer nope"), true, Err("invalid bearer token"));
        check_authn(Some(Ok(cert_user.clone())), Some(b"Bearer nope"), true, Ok(("carol", &["admins", "system:authenticated"])));
        check_authn(Some(Err(x509::X509Error::NoCommonName)), None, true, Err("no common name"));
        // A scheme other than Bearer is not a credential rkube reads: anonymous, as upstream.
        check_authn(None, Some(b"Basic YWxpY2U6cHc="), true, Ok(("system:anonymous", &["system:unauthenticated"])));
    }
}
