//! The API resource table: which resources rkube serves, and everything about
//! them that is a fact rather than behaviour — group, version, kind, plural
//! and singular names, scope, short names, categories, subresources, and the
//! etcd key segment the apiserver stores them under.
//!
//! Kubernetes spreads these facts over each resource's registry and the
//! discovery handlers; rkube keeps them in one table so that discovery, the
//! apiserver's router, the storage key layout and the clients agree by
//! construction.

/// One served resource, as discovery (`APIResource`) describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; "" is the legacy core group served under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural used in URLs: `/api/v1/namespaces/{ns}/pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// `all` puts a resource in `kubectl get all`.
    pub categories: &'static [&'static str],
    pub subresources: &'static [&'static str],
    /// The path segment under the etcd prefix. Usually the plural, but
    /// Kubernetes keeps a few historical names (`minions` for nodes,
    /// `services/specs` for services) and rkube lays keys out the same way.
    pub storage: &'static str,
}

impl ResourceInfo {
    /// `v1` for the core group, otherwise `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `PodList` etc.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The group-version URL prefix: `/api/v1` or `/apis/apps/v1`.
    pub fn url_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// "pods" or "deployments.apps": how Kubernetes names a resource in
    /// messages such as `deployments.apps "web" not found`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Virtual resources (access reviews) are computed per request and
    /// never stored: they have no etcd key segment.
    pub fn is_stored(&self) -> bool {
        !self.storage.is_empty()
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr,
     short: $short:expr, categories: $cat:expr, sub: $sub:expr, storage: $storage:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: $short,
            categories: $cat,
            subresources: $sub,
            storage: $storage,
        }
    };
}

/// Every resource rkube serves. Order is the order discovery lists them.
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", true,
        short: &["cm"], categories: NONE, sub: NONE, storage: "configmaps"),
    resource!("", "v1", "LimitRange", "limitranges", "limitrange", true,
        short: &["limits"], categories: NONE, sub: NONE, storage: "limitranges"),
    resource!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", true,
        short: &["quota"], categories: NONE, sub: &["status"], storage: "resourcequotas"),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", true,
        short: &["ep"], categories: NONE, sub: NONE, storage: "services/endpoints"),
    resource!("", "v1", "Event", "events", "event", true,
        short: &["ev"], categories: NONE, sub: NONE, storage: "events"),
    resource!("", "v1", "Namespace", "namespaces", "namespace", false,
        short: &["ns"], categories: NONE, sub: &["status", "finalize"], storage: "namespaces"),
    resource!("", "v1", "Node", "nodes", "node", false,
        short: &["no"], categories: NONE, sub: &["status"], storage: "minions"),
    resource!("", "v1", "Pod", "pods", "pod", true,
        short: &["po"], categories: ALL, sub: &["status", "binding", "eviction", "ephemeralcontainers", "log", "exec", "attach", "portforward", "proxy"], storage: "pods"),
    resource!("", "v1", "Secret", "secrets", "secret", true,
        short: NONE, categories: NONE, sub: NONE, storage: "secrets"),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true,
        short: &["sa"], categories: NONE, sub: NONE, storage: "serviceaccounts"),
    resource!("", "v1", "Service", "services", "service", true,
        short: &["svc"], categories: ALL, sub: &["status", "proxy"], storage: "services/specs"),
    // apps/v1
    resource!("apps", "v1", "Deployment", "deployments", "deployment", true,
        short: &["deploy"], categories: ALL, sub: &["status", "scale"], storage: "deployments"),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true,
        short: &["rs"], categories: ALL, sub: &["status", "scale"], storage: "replicasets"),
    // coordination.k8s.io/v1
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true,
        short: NONE, categories: NONE, sub: NONE, storage: "leases"),
    // rbac.authorization.k8s.io/v1
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false,
        short: NONE, categories: NONE, sub: NONE, storage: "clusterroles"),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false,
        short: NONE, categories: NONE, sub: NONE, storage: "clusterrolebindings"),
    resource!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true,
        short: NONE, categories: NONE, sub: NONE, storage: "roles"),
    resource!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true,
        short: NONE, categories: NONE, sub: NONE, storage: "rolebindings"),
    // authorization.k8s.io/v1: reviews are answered, never stored.
    resource!("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "", false,
        short: NONE, categories: NONE, sub: NONE, storage: ""),
    resource!("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "", false,
        short: NONE, categories: NONE, sub: NONE, storage: ""),
    // authentication.k8s.io/v1: `kubectl auth whoami`, answered, never stored.
    resource!("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "", false,
        short: NONE, categories: NONE, sub: NONE, storage: ""),
];

/// The API groups served, in discovery order, each with its one version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.iter().any(|(g, _)| *g == r.group) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Look a resource up by group, version and plural, as the router does.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Look a resource up by its kind, as a client holding a typed object does.
pub fn find_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
}

/// All resources of one group-version, for `/api/v1` and `/apis/<g>/<v>`.
pub fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

/// The etcd key of one object, laid out as kube-apiserver lays it out:
/// `<prefix>/<storage>/<namespace>/<name>` for namespaced resources and
/// `<prefix>/<storage>/<name>` for cluster-scoped ones.
pub fn object_key(prefix: &str, r: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if r.namespaced => format!("{}/{}/{}/{}", prefix, r.storage, ns, name),
        _ => format!("{}/{}/{}", prefix, r.storage, name),
    }
}

/// The key prefix holding every object of a resource (all namespaces), or of
/// one namespace. Always ends in `/` so that `pods/a` never matches `pods/ab`.
pub fn collection_key(prefix: &str, r: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if r.namespaced => format!("{}/{}/{}/", prefix, r.storage, ns),
        _ => format!("{}/{}/", prefix, r.storage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_key(plural: &str, group: &str, ns: Option<&str>, name: &str, expected: &str) {
        let r = find(group, "v1", plural).expect("resource");
        assert_eq!(object_key("/registry", r, ns, name), expected);
    }

    #[test]
    fn keys_follow_kubernetes_layout() {
        check_key("pods", "", Some("default"), "web", "/registry/pods/default/web");
        check_key("nodes", "", None, "n1", "/registry/minions/n1");
        check_key("services", "", Some("kube-system"), "dns", "/registry/services/specs/kube-system/dns");
        check_key("endpoints", "", Some("default"), "web", "/registry/services/endpoints/default/web");
        check_key("namespaces", "", None, "default", "/registry/namespaces/default");
        check_key("deployments", "apps", Some("a"), "d", "/registry/deployments/a/d");
        check_key("leases", "coordination.k8s.io", Some("kube-node-lease"), "n1", "/registry/leases/kube-node-lease/n1");
        // A cluster-scoped resource ignores a namespace.
        check_key("nodes", "", Some("default"), "n1", "/registry/minions/n1");
    }

    #[test]
    fn collection_keys_end_in_slash() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(collection_key("/registry", pods, None), "/registry/pods/");
        assert_eq!(collection_key("/registry", pods, Some("ns1")), "/registry/pods/ns1/");
    }

    #[test]
    fn table_is_consistent() {
        for r in RESOURCES {
            assert_eq!(find(r.group, r.version, r.plural), Some(r), "{} twice", r.plural);
            assert_eq!(find_kind(r.group, r.kind), Some(r));
            assert!(r.plural.chars().all(|c| c.is_ascii_lowercase()));
        }
        assert_eq!(
            groups(),
            vec![("apps", "v1"), ("coordination.k8s.io", "v1"), ("rbac.authorization.k8s.io", "v1"), ("authorization.k8s.io", "v1"), ("authentication.k8s.io", "v1")]
        );
    }
}
