//! The shared informer factory (client-go's `SharedInformerFactory`): one
//! informer per kind for the whole process, however many controllers read
//! it. The ReplicaSet, Deployment, Endpoints, GC and node controllers all
//! look at pods; they share one list+watch and one cache.
//!
//! Controllers ask for informers while they are being built (and register
//! their handlers); [`InformerFactory::start`] then runs every informer that
//! was asked for and waits until each has its first full list.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::{Api, Client};
use machinery::informer::{self, Informer};
use machinery::resources::ResourceInfo;
use tokio::task::JoinHandle;

/// Index: owner UIDs from `metadata.ownerReferences` (the garbage
/// collector's "dependents of X").
pub const BY_OWNER: &str = "owner";
/// Index: `metadata.namespace`.
pub const BY_NAMESPACE: &str = "namespace";
/// Index: `spec.nodeName` of pods.
pub const BY_NODE: &str = "node";

pub fn owner_uids(meta: &ObjectMeta) -> Vec<String> {
    meta.owner_references.iter().flatten().map(|r| r.uid.clone()).collect()
}

pub struct InformerFactory {
    client: Client,
    resync: Duration,
    pods: OnceLock<Informer<Pod>>,
    replicasets: OnceLock<Informer<ReplicaSet>>,
    deployments: OnceLock<Informer<Deployment>>,
    services: OnceLock<Informer<Service>>,
    endpoints: OnceLock<Informer<Endpoints>>,
    service_accounts: OnceLock<Informer<ServiceAccount>>,
    nodes: OnceLock<Informer<Node>>,
    namespaces: OnceLock<Informer<Namespace>>,
    node_leases: OnceLock<Informer<Lease>>,
    resource_quotas: OnceLock<Informer<ResourceQuota>>,
    /// Metadata-only informers for any resource, by `plural.group`.
    metadata: Mutex<HashMap<String, Informer<DynamicObject>>>,
}

macro_rules! namespaced {
    ($self:ident, $field:ident) => {
        $self
            .$field
            .get_or_init(|| {
                Informer::new(Api::all($self.client.clone()))
                    .resync($self.resync)
                    .index(BY_NAMESPACE, informer::namespace)
                    .index(BY_OWNER, |o| owner_uids(kube::Resource::meta(o)))
            })
            .clone()
    };
}

impl InformerFactory {
    pub fn new(client: Client, resync: Duration) -> Self {
        InformerFactory {
            client,
            resync,
            pods: OnceLock::new(),
            replicasets: OnceLock::new(),
            deployments: OnceLock::new(),
            services: OnceLock::new(),
            endpoints: OnceLock::new(),
            service_accounts: OnceLock::new(),
            nodes: OnceLock::new(),
            namespaces: OnceLock::new(),
            node_leases: OnceLock::new(),
            resource_quotas: OnceLock::new(),
            metadata: Mutex::default(),
        }
    }

    pub fn pods(&self) -> Informer<Pod> {
        self.pods
            .get_or_init(|| {
                Informer::new(Api::all(self.client.clone()))
                    .resync(self.resync)
                    .index(BY_NAMESPACE, informer::namespace)
                    .index(BY_OWNER, |o| owner_uids(kube::Resource::meta(o)))
                    .index(BY_NODE, informer::pod_node_name)
            })
            .clone()
    }
    pub fn replicasets(&self) -> Informer<ReplicaSet> {
        namespaced!(self, replicasets)
    }
    pub fn deployments(&self) -> Informer<Deployment> {
        namespaced!(self, deployments)
    }
    pub fn services(&self) -> Informer<Service> {
        namespaced!(self, services)
    }
    pub fn endpoints(&self) -> Informer<Endpoints> {
        namespaced!(self, endpoints)
    }
    pub fn service_accounts(&self) -> Informer<ServiceAccount> {
        namespaced!(self, service_accounts)
    }
    pub fn resource_quotas(&self) -> Informer<ResourceQuota> {
        namespaced!(self, resource_quotas)
    }
    // Cluster-scoped kinds are indexed by owner too: the garbage
    // collector looks up dependents of every kind.
    pub fn nodes(&self) -> Informer<Node> {
        self.nodes
            .get_or_init(|| Informer::new(Api::all(self.client.clone())).resync(self.resync).index(BY_OWNER, |o| owner_uids(kube::Resource::meta(o))))
            .clone()
    }
    pub fn namespaces(&self) -> Informer<Namespace> {
        self.namespaces
            .get_or_init(|| Informer::new(Api::all(self.client.clone())).resync(self.resync).index(BY_OWNER, |o| owner_uids(kube::Resource::meta(o))))
            .clone()
    }
    /// Node heartbeats: the Leases in `kube-node-lease`.
    pub fn node_leases(&self) -> Informer<Lease> {
        self.node_leases
            .get_or_init(|| Informer::new(Api::namespaced(self.client.clone(), "kube-node-lease")).resync(self.resync))
            .clone()
    }

    /// A metadata-only informer over any resource of the table (client-go's
    /// metadata informers, which the garbage collector uses for the kinds no
    /// typed informer covers): the objects' bodies are dropped before
    /// caching, only `metadata` is kept (minus managedFields). Indexed by
    /// namespace and owner UID.
    pub fn metadata(&self, r: &'static ResourceInfo) -> Informer<DynamicObject> {
        let mut all = self.metadata.lock().unwrap();
        all.entry(r.qualified_plural())
            .or_insert_with(|| {
                let ar = ApiResource {
                    group: r.group.into(),
                    version: r.version.into(),
                    api_version: r.api_version(),
                    kind: r.kind.into(),
                    plural: r.plural.into(),
                };
                Informer::new(Api::all_with(self.client.clone(), &ar))
                    .resync(self.resync)
                    .transform(|o: &mut DynamicObject| {
                        o.data = serde_json::Value::Null;
                        o.metadata.managed_fields = None;
                    })
                    .index(BY_NAMESPACE, informer::namespace)
                    .index(BY_OWNER, |o| owner_uids(&o.metadata))
            })
            .clone()
    }

    /// Runs every informer asked for so far and waits for their first lists.
    pub async fn start(&self) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        macro_rules! run {
            ($($f:ident),*) => {$(
                if let Some(i) = self.$f.get() {
                    handles.push(i.spawn());
                }
            )*};
        }
        run!(pods, replicasets, deployments, services, endpoints, service_accounts, nodes, namespaces, node_leases, resource_quotas);
        let metadata: Vec<Informer<DynamicObject>> = self.metadata.lock().unwrap().values().cloned().collect();
        handles.extend(metadata.iter().map(|i| i.spawn()));
        macro_rules! wait {
            ($($f:ident),*) => {$(
                if let Some(i) = self.$f.get() {
                    i.wait_for_sync().await;
                }
            )*};
        }
        wait!(pods, replicasets, deployments, services, endpoints, service_accounts, nodes, namespaces, node_leases, resource_quotas);
        for i in &metadata {
            i.wait_for_sync().await;
        }
        handles
    }
}
