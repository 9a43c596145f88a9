//! What an authorizer is asked and what it answers
//! (k8s.io/apiserver/pkg/authorization/authorizer: `Attributes`,
//! `Decision`).
//!
//! Every authorizer ([`super::rbac`], [`super::node`]) and the union of them
//! in [`super`] speak these two types. They import nothing of `auth`: an
//! authorizer can be read knowing only the question and the possible
//! answers.

/// What a request wants to do, in authorization terms
/// (k8s.io/apiserver/pkg/authorization/authorizer.Attributes).
///
/// A *resource request* names a verb on a resource (`get pods/log`); a
/// *non-resource request* names a verb on a URL path (`get /healthz`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get list watch create update patch delete deletecollection`, or for
    /// non-resource requests the lower-cased HTTP method (`get`, `post`, ...).
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    /// Plural resource name (`pods`); empty for non-resource requests.
    pub resource: String,
    pub subresource: String,
    /// Empty for cluster-scoped resources and for "all namespaces" lists.
    pub namespace: String,
    /// Object name from the URL; empty for lists and, as upstream, for
    /// create: Kubernetes never authorizes a create by name (a Role's
    /// `resourceNames` cannot grant one), and its 403 names no object.
    pub name: String,
    /// A create's `metadata.name` from the body. No authorization attribute
    /// upstream: only the Node authorizer reads it, standing in for the
    /// NodeRestriction admission plugin (a node creates only its own Node
    /// and Lease — see [`super::node`]).
    pub created_name: String,
    /// The URL path, for non-resource requests.
    pub path: String,
}

impl Attributes {
    pub fn resource(verb: &str, api_group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: api_group.into(),
            api_version: String::new(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    pub fn with_subresource(mut self, subresource: &str) -> Self {
        self.subresource = subresource.into();
        self
    }

    pub fn non_resource(verb: &str, path: &str) -> Self {
        Attributes { verb: verb.into(), path: path.into(), ..Default::default() }
    }

    /// `pods` or `pods/log`: how RBAC rules name a resource.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// An authorizer's answer (authorizer.Decision plus its reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; the reason says by what (`RBAC: allowed by ClusterRoleBinding ...`).
    Allow(String),
    /// Explicitly denied: no later authorizer is asked.
    Deny(String),
    /// This authorizer does not allow it; the next one may. The reason (often
    /// empty) explains, and ends up in the 403 message.
    NoOpinion(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(r) | Decision::Deny(r) | Decision::NoOpinion(r) => r,
        }
    }
}
