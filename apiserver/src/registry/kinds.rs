//! The registration table: which strategy serves which resource (upstream:
//! each resource's REST storage is built with its strategy when the API
//! groups are installed, `NewLegacyRESTStorage` and the apps/rbac storage
//! providers).
//!
//! Strategies are trait objects looked up by resource at run time, so a
//! kind the server learns later — a CustomResourceDefinition's, with a
//! strategy built from its schema — is one more [`Strategies::register`],
//! with no change to the store.

use std::collections::HashMap;
use std::sync::Arc;

use machinery::resources::ResourceInfo;

use super::allocator::{NodePorts, ServiceIps};
use super::clusterrole::ClusterRoleStrategy;
use super::clusterrolebinding::ClusterRoleBindingStrategy;
use super::configmap::ConfigMapStrategy;
use super::deployment::DeploymentStrategy;
use super::event::EventStrategy;
use super::namespace::NamespaceStrategy;
use super::node::NodeStrategy;
use super::pod::PodStrategy;
use super::replicaset::ReplicaSetStrategy;
use super::role::RoleStrategy;
use super::rolebinding::RoleBindingStrategy;
use super::secret::SecretStrategy;
use super::service::ServiceStrategy;
use super::strategy::{DefaultStrategy, Strategy};

/// Resource (group, plural) → strategy.
#[derive(Default)]
pub struct Strategies {
    by_resource: HashMap<(&'static str, &'static str), Arc<dyn Strategy>>,
}

impl Strategies {
    /// The strategies of the kinds rkube serves. Services allocate from
    /// `ips` and `ports`; the kinds not named here (Endpoints, LimitRange,
    /// ResourceQuota, ServiceAccount, Lease) have no rules of their own.
    pub fn builtin(ips: &ServiceIps, ports: &NodePorts) -> Self {
        let mut s = Strategies::default();
        s.register("", "pods", PodStrategy);
        s.register("", "services", ServiceStrategy { ips: ips.clone(), ports: ports.clone() });
        s.register("", "namespaces", NamespaceStrategy);
        s.register("", "nodes", NodeStrategy);
        s.register("", "events", EventStrategy);
        s.register("", "secrets", SecretStrategy);
        s.register("", "configmaps", ConfigMapStrategy);
        s.register("apps", "deployments", DeploymentStrategy);
        s.register("apps", "replicasets", ReplicaSetStrategy);
        let rbac = "rbac.authorization.k8s.io";
        s.register(rbac, "roles", RoleStrategy);
        s.register(rbac, "clusterroles", ClusterRoleStrategy);
        s.register(rbac, "rolebindings", RoleBindingStrategy);
        s.register(rbac, "clusterrolebindings", ClusterRoleBindingStrategy);
        s
    }

    /// Serves the resource `group`/`plural` with `strategy`.
    pub fn register(&mut self, group: &'static str, plural: &'static str, strategy: impl Strategy + 'static) {
        self.by_resource.insert((group, plural), Arc::new(strategy));
    }

    /// The strategy of `r`: its own, or the default one.
    pub fn get(&self, r: &ResourceInfo) -> Arc<dyn Strategy> {
        match self.by_resource.get(&(r.group, r.plural)) {
            Some(s) => s.clone(),
            None => Arc::new(DefaultStrategy),
        }
    }
}
