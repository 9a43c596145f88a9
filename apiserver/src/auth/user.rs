//! Who is asking: the authenticated user (k8s.io/apiserver/pkg/authentication/user).
//!
//! Kubernetes has no User objects. An authenticator (client certificate,
//! bearer token) turns a request into a *user name* plus *groups*, and
//! everything after — RBAC bindings, the Node authorizer, audit — works on
//! those strings alone. A few names and groups are reserved (`system:` prefix)
//! and carry meaning; they are all here.

use std::collections::BTreeMap;

/// The user of a request that presented no credentials.
pub const ANONYMOUS: &str = "system:anonymous";
/// Every request with no credentials is in this group.
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
/// Every request that did authenticate is in this group.
pub const ALL_AUTHENTICATED: &str = "system:authenticated";
/// Members may do anything, whatever RBAC says (kube-apiserver's
/// privileged-group authorizer); `cluster-admin` is also bound to it.
pub const SYSTEM_PRIVILEGED_GROUP: &str = "system:masters";
/// Node identities: user `system:node:<name>` in group `system:nodes`.
pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const KUBE_PROXY: &str = "system:kube-proxy";
pub const KUBE_SCHEDULER: &str = "system:kube-scheduler";
pub const KUBE_CONTROLLER_MANAGER: &str = "system:kube-controller-manager";
/// Service accounts: `system:serviceaccount:<namespace>:<name>`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";
/// Every service account is in this group, and in `system:serviceaccounts:<ns>`.
pub const ALL_SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";

/// An authenticated (or anonymous) user: `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes an authenticator may attach (scopes and the like).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        UserInfo { name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..Default::default() }
    }

    /// What a request with no credentials becomes (when anonymous requests
    /// are allowed, as they are by default).
    pub fn anonymous() -> Self {
        UserInfo::new(ANONYMOUS, &[ALL_UNAUTHENTICATED])
    }

    /// The identity of a service account, with the two groups Kubernetes
    /// gives it.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        UserInfo::new(
            service_account_username(namespace, name),
            &[ALL_SERVICE_ACCOUNTS_GROUP, &format!("{ALL_SERVICE_ACCOUNTS_GROUP}:{namespace}")],
        )
    }

    /// Adds `system:authenticated`, as kube-apiserver's AuthenticatedGroupAdder
    /// does to every user an authenticator returned — unless the user already
    /// has it or is explicitly unauthenticated.
    pub fn with_authenticated_group(mut self) -> Self {
        if !self.groups.iter().any(|g| g == ALL_AUTHENTICATED || g == ALL_UNAUTHENTICATED) {
            self.groups.push(ALL_AUTHENTICATED.to_string());
        }
        self
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// `(namespace, name)` when this is a service account.
    pub fn service_account_parts(&self) -> Option<(&str, &str)> {
        let rest = self.name.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?;
        let (ns, name) = rest.split_once(':')?;
        if ns.is_empty() || name.is_empty() || name.contains(':') {
            return None;
        }
        Some((ns, name))
    }

    /// The node name when this is a node identity: user `system:node:<name>`
    /// *and* group `system:nodes` (both, as the Node authorizer requires).
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group(NODES_GROUP) {
            return None;
        }
        self.name.strip_prefix(NODE_USER_PREFIX)
    }
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_groups(user: UserInfo, expected: &[&str]) {
        assert_eq!(user.groups, expected.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn authenticated_group_is_added_once() {
        check_groups(UserInfo::new("alice", &["dev"]).with_authenticated_group(), &["dev", ALL_AUTHENTICATED]);
        check_groups(
            UserInfo::new("alice", &[ALL_AUTHENTICATED]).with_authenticated_group(),
            &[ALL_AUTHENTICATED],
        );
        // Anonymous stays unauthenticated.
        check_groups(UserInfo::anonymous().with_authenticated_group(), &[ALL_UNAUTHENTICATED]);
    }

    #[test]
    fn service_accounts_and_nodes() {
        let sa = UserInfo::service_account("team", "builder");
        assert_eq!(sa.name, "system:serviceaccount:team:builder");
        check_groups(sa.clone(), &["system:serviceaccounts", "system:serviceaccounts:team"]);
        assert_eq!(sa.service_account_parts(), Some(("team", "builder")));
        assert_eq!(UserInfo::new("system:serviceaccount:bad", &[]).service_account_parts(), None);

        assert_eq!(UserInfo::new("system:node:n1", &[NODES_GROUP]).node_name(), Some("n1"));
        // The name alone is not enough: the group is required too.
        assert_eq!(UserInfo::new("system:node:n1", &[]).node_name(), None);
    }
}
