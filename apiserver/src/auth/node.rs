//! The Node authorizer: a kubelet may touch only what belongs to its node
//! (plugin/pkg/auth/authorizer/node, together with the NodeRestriction
//! admission plugin, which upstream enforces the "own object" half).
//!
//! A node identity is the user `system:node:<name>` in group `system:nodes`
//! (its client certificate has `CN=system:node:<name>, O=system:nodes`).
//! Anything else gets *no opinion*, leaving the request to RBAC.
//!
//! For a node, rkube allows:
//! - **Node** `<name>`: create (register), update/patch, and its `status`;
//!   reading any Node (kubelets list nodes), never deleting one.
//! - **Lease** `<name>` in `kube-node-lease`: the node heartbeat.
//! - **Pods**: reading all (watch with a field selector on nodeName), and
//!   `status` updates and deletion only of pods bound to this node — looked
//!   up through `pod_node`, a closure the apiserver gives over its cache.
//! - Everything else a kubelet uses (events, services, endpoints, access
//!   reviews) as the `system:node` role lists it.
//!
//! Unlike upstream, rkube keeps no node→secret/configmap graph: a node may
//! not read Secrets or ConfigMaps at all (rkube's agent mounts none yet).
//!
//! For `create` requests upstream leaves the name out of the authorization
//! attributes and checks it in admission (NodeRestriction); here the
//! pipeline passes the body's `metadata.name` in [`Attributes::created_name`],
//! which only this authorizer reads.

use super::attributes::{Attributes, Decision};
use super::{bootstrap, rbac, UserInfo};

/// The namespace of node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The Node authorizer. `pod_node(namespace, name)` returns the pod's
/// `spec.nodeName` (None: no such pod or not bound).
pub fn authorize(user: &UserInfo, attrs: &Attributes, pod_node: &dyn Fn(&str, &str) -> Option<String>) -> Decision {
    let Some(node) = user.node_name() else {
        return Decision::NoOpinion(String::new());
    };
    if node.is_empty() {
        return Decision::NoOpinion(format!("unknown node for user {:?}", user.name));
    }
    if !attrs.resource_request {
        // Discovery and health paths: RBAC's business.
        return Decision::NoOpinion(String::new());
    }
    // The object a write is about: a create's body name, else the URL's.
    let target = if attrs.verb == "create" && attrs.name.is_empty() { &attrs.created_name } else { &attrs.name };
    let no_relationship = || Decision::NoOpinion(format!("no relationship found between node '{node}' and this object"));
    let allow = || Decision::Allow(String::new());
    let by_rules = || {
        if rbac::rules_allow(attrs, &bootstrap::node_rules()) {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(String::new())
        }
    };

    match (attrs.api_group.as_str(), attrs.resource.as_str(), attrs.subresource.as_str()) {
        ("", "nodes", sub) => {
            let writes = matches!(attrs.verb.as_str(), "create" | "update" | "patch" | "delete");
            if writes && target != node {
                // NodeRestriction's wording.
                return Decision::NoOpinion(format!("node {:?} is not allowed to modify node {:?}", node, target));
            }
            match (sub, attrs.verb.as_str()) {
                ("", "get" | "list" | "watch" | "create" | "update" | "patch") => allow(),
                ("status", "get" | "update" | "patch") => allow(),
                _ => Decision::NoOpinion(String::new()),
            }
        }
        ("", "pods", sub) => match (sub, attrs.verb.as_str()) {
            ("", "get" | "list" | "watch") => allow(),
            ("", "delete") | ("status", "update" | "patch" | "get") => {
                if pod_node(&attrs.namespace, &attrs.name).as_deref() == Some(node) {
                    allow()
                } else {
                    no_relationship()
                }
            }
            // rkube has no mirror pods: a node never creates pods.
            _ => Decision::NoOpinion(String::new()),
        },
        ("", "secrets" | "configmaps", _) => no_relationship(),
        ("coordination.k8s.io", "leases", "") => {
            if attrs.namespace != NODE_LEASE_NAMESPACE || target != node {
                return Decision::NoOpinion(format!(
                    "can only access node lease with the same name as the requesting node ({NODE_LEASE_NAMESPACE}/{node})"
                ));
            }
            by_rules()
        }
        _ => by_rules(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(ns: &str, name: &str) -> Option<String> {
        match (ns, name) {
            ("default", "mine") => Some("n1".into()),
            ("default", "theirs") => Some("n2".into()),
            _ => None,
        }
    }

    fn check(user: UserInfo, attrs: Attributes, expected: &str) {
        let d = authorize(&user, &attrs, &pods);
        let got = match &d {
            Decision::Allow(_) => "allow",
            Decision::Deny(_) => "deny",
            Decision::NoOpinion(_) => "no",
        };
        assert_eq!(got, expected, "{} {:?}: {:?}", user.name, attrs, d);
    }

    fn n1() -> UserInfo {
        UserInfo::new("system:node:n1", &["system:nodes", "system:authenticated"])
    }

    fn res(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes::resource(verb, group, resource, ns, name)
    }

    #[test]
    fn own_node_only() {
        check(n1(), res("create", "", "nodes", "", "n1"), "allow");
        check(n1(), res("update", "", "nodes", "", "n1"), "allow");
        check(n1(), res("patch", "", "nodes", "", "n1").with_subresource("status"), "allow");
        check(n1(), res("patch", "", "nodes", "", "n2").with_subresource("status"), "no");
        check(n1(), res("update", "", "nodes", "", "n2"), "no");
        check(n1(), res("create", "", "nodes", "", "n2"), "no");
        check(n1(), res("delete", "", "nodes", "", "n1"), "no");
        check(n1(), res("list", "", "nodes", "", ""), "allow");
        check(n1(), res("get", "", "nodes", "", "n2"), "allow");
    }

    #[test]
    fn own_lease_only() {
        check(n1(), res("get", "coordination.k8s.io", "leases", "kube-node-lease", "n1"), "allow");
        check(n1(), res("create", "coordination.k8s.io", "leases", "kube-node-lease", "n1"), "allow");
        // A create names its object in the body, not the URL.
        let create = |name: &str| Attributes { created_name: name.into(), ..res("create", "coordination.k8s.io", "leases", "kube-node-lease", "") };
        check(n1(), create("n1"), "allow");
        check(n1(), create("n2"), "no");
        check(n1(), Attributes { created_name: "n2".into(), ..res("create", "", "nodes", "", "") }, "no");
        check(n1(), Attributes { created_name: "n1".into(), ..res("create", "", "nodes", "", "") }, "allow");
        check(n1(), res("update", "coordination.k8s.io", "leases", "kube-node-lease", "n1"), "allow");
        check(n1(), res("update", "coordination.k8s.io", "leases", "kube-node-lease", "n2"), "no");
        check(n1(), res("update", "coordination.k8s.io", "leases", "kube-system", "n1"), "no");
        check(n1(), res("list", "coordination.k8s.io", "leases", "kube-node-lease", ""), "no");
    }

    #[test]
    fn pods_bound_to_the_node() {
        check(n1(), res("watch", "", "pods", "", ""), "allow");
        check(n1(), res("update", "", "pods", "default", "mine").with_subresource("status"), "allow");
        check(n1(), res("patch", "", "pods", "default", "mine").with_subresource("status"), "allow");
        check(n1(), res("delete", "", "pods", "default", "mine"), "allow");
        check(n1(), res("update", "", "pods", "default", "theirs").with_subresource("status"), "no");
        check(n1(), res("delete", "", "pods", "default", "theirs"), "no");
        check(n1(), res("delete", "", "pods", "default", "unknown"), "no");
        check(n1(), res("update", "", "pods", "default", "mine"), "no");
        check(n1(), res("create", "", "pods", "default", ""), "no");
        check(n1(), res("create", "", "pods", "default", "mine").with_subresource("binding"), "no");
    }

    #[test]
    fn other_resources_follow_the_node_role() {
        check(n1(), res("create", "", "events", "default", ""), "allow");
        check(n1(), res("watch", "", "services", "", ""), "allow");
        check(n1(), res("get", "", "endpoints", "default", "kubernetes"), "allow");
        check(n1(), res("get", "", "secrets", "default", "s"), "no");
        check(n1(), res("list", "", "configmaps", "default", ""), "no");
        check(n1(), res("create", "apps", "deployments", "default", ""), "no");
        check(n1(), Attributes::non_resource("get", "/api"), "no");
    }

    #[test]
    fn only_node_identities() {
        // Name without the group, or group without the name: not a node.
        check(UserInfo::new("system:node:n1", &[]), res("update", "", "nodes", "", "n1"), "no");
        check(UserInfo::new("bob", &["system:nodes"]), res("update", "", "nodes", "", "bob"), "no");
        check(UserInfo::new("system:node:", &["system:nodes"]), res("get", "", "nodes", "", ""), "no");
    }

    #[test]
    fn reasons() {
        let d = authorize(&n1(), &res("update", "", "nodes", "", "n2"), &pods);
        assert_eq!(d.reason(), r#"node "n1" is not allowed to modify node "n2""#);
        let d = authorize(&n1(), &res("delete", "", "pods", "default", "theirs"), &pods);
        assert_eq!(d.reason(), "no relationship found between node 'n1' and this object");
    }
}
