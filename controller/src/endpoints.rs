//! The Endpoints controller (upstream `pkg/controller/endpoint`): for every
//! Service with a selector, an Endpoints object of the same name listing
//! the pods behind it — what the service proxy programs.
//!
//! For each pod in the namespace matching the selector, with an IP and not
//! finished or being deleted (upstream `ShouldPodBeInEndpoints`): its
//! address goes to `addresses` when Ready (or the Service publishes
//! not-ready addresses), else to `notReadyAddresses`; with `nodeName` and a
//! `targetRef` to the pod. Each Service port's `targetPort` is resolved per
//! pod: a number as is, a name through the pod's container ports (a pod
//! without that named port is left out for that port). Finally the subsets
//! are *repacked*: addresses with the same set of ports share one subset.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use machinery::informer::{key_of, HandlerFns, Store};
use machinery::selector::Selector;
use machinery::workqueue::WorkQueue;

use crate::context::Context;
use crate::controller_utils::*;
use crate::informers::BY_NAMESPACE;

pub struct EndpointsController {
    client: Client,
    svc_store: Store<Service>,
    pod_store: Store<Pod>,
    ep_store: Store<Endpoints>,
    pub queue: WorkQueue<String>,
}

fn selector_of(svc: &Service) -> Option<Selector> {
    let sel = svc.spec.as_ref()?.selector.clone().filter(|s| !s.is_empty())?;
    Selector::from_label_selector(&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector { match_labels: Some(sel), match_expressions: None }).ok()
}

/// Services in the pod's namespace that select it (upstream `GetPodServiceMemberships`).
fn services_for(svc_store: &Store<Service>, pod: &Pod) -> Vec<String> {
    let l = labels(&pod.metadata);
    svc_store
        .by_index(BY_NAMESPACE, ns(&pod.metadata))
        .iter()
        .filter(|s| selector_of(s).is_some_and(|sel| sel.matches(&l)))
        .map(|s| key_of(s.as_ref()))
        .collect()
}

impl EndpointsController {
    pub fn new(ctx: &Context) -> Arc<Self> {
        let svc_inf = ctx.informers.services();
        let pod_inf = ctx.informers.pods();
        let ep_inf = ctx.informers.endpoints();
        let queue = ctx.queue("endpoint");
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        svc_inf.add_event_handler(
            HandlerFns::new()
                .on_add(move |s: &Arc<Service>| q1.add(key_of(s.as_ref())))
                .on_update(move |_, s: &Arc<Service>| q2.add(key_of(s.as_ref())))
                .on_delete(move |s: &Arc<Service>| q3.add(key_of(s.as_ref()))),
        );
        let ss = svc_inf.store();
        let (s1, s2, s3) = (ss.clone(), ss.clone(), ss);
        let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
        pod_inf.add_event_handler(
            HandlerFns::new()
                .on_add(move |p: &Arc<Pod>| services_for(&s1, p).into_iter().for_each(|k| q1.add(k)))
                .on_update(move |old: &Arc<Pod>, new: &Arc<Pod>| {
                    if old.metadata.resource_version == new.metadata.resource_version {
                        return;
                    }
                    let mut keys = services_for(&s2, new);
                    if old.metadata.labels != new.metadata.labels {
                        keys.extend(services_for(&s2, old));
                    }
                    keys.into_iter().for_each(|k| q2.add(k));
                })
                .on_delete(move |p: &Arc<Pod>| services_for(&s3, p).into_iter().for_each(|k| q3.add(k))),
        );
        let q4 = queue.clone();
        ep_inf.add_event_handler(HandlerFns::new().on_delete(move |e: &Arc<Endpoints>| q4.add(key_of(e.as_ref()))));
        Arc::new(EndpointsController { client: ctx.client.clone(), svc_store: svc_inf.store(), pod_store: pod_inf.store(), ep_store: ep_inf.store(), queue })
    }

    pub async fn run(self: Arc<Self>, workers: usize, gate: Gate) {
        let c = self.clone();
        run_workers("endpoint", self.queue.clone(), workers, gate, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    }

    pub async fn sync(&self, key: &str) -> anyhow::Result<()> {
        let (namespace, svc_name) = match key.split_once('/') {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => return Ok(()),
        };
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &namespace);
        let Some(svc) = self.svc_store.get(key) else {
            // Service gone: so are its Endpoints.
            return delete_ignore_missing(&api, &svc_name, &DeleteParams::default()).await.context("deleting endpoints");
        };
        if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            return Ok(());
        }
        let Some(selector) = selector_of(&svc) else { return Ok(()) }; // not ours: no selector
        let pods: Vec<Arc<Pod>> = self.pod_store.by_index(BY_NAMESPACE, &namespace).into_iter().filter(|p| selector.matches(&labels(&p.metadata))).collect();
        let subsets = build_subsets(&svc, &pods);

        let mut want_labels = svc.metadata.labels.clone().unwrap_or_default();
        if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
            want_labels.insert("service.kubernetes.io/headless".into(), String::new());
        }
        let current = self.ep_store.get(key);
        let subsets_opt = (!subsets.is_empty()).then_some(subsets);
        if let Some(cur) = &current {
            let cur_subsets = cur.subsets.clone().filter(|s| !s.is_empty());
            if cur_subsets == subsets_opt && cur.metadata.labels.clone().unwrap_or_default() == want_labels {
                return Ok(());
            }
        }
        let mut ep = current.map(|c| (*c).clone()).unwrap_or_default();
        ep.metadata.name = Some(svc_name.clone());
        ep.metadata.namespace = Some(namespace.clone());
        ep.metadata.labels = (!want_labels.is_empty()).then_some(want_labels);
        ep.subsets = subsets_opt;
        let res = if ep.metadata.resource_version.is_some() {
            api.replace(&svc_name, &PostParams::default(), &ep).await
        } else {
            api.create(&PostParams::default(), &ep).await
        };
        match res {
            Ok(_) => Ok(()),
            // The namespace is going away: nothing to keep up to date.
            Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("being terminated") => Ok(()),
            Err(e) => Err(e).context("writing endpoints"),
        }
    }
}

/// Upstream `podutil.FindPort`: a service port's target port on this pod.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec.as_ref()?.containers.iter().flat_map(|c| c.ports.iter().flatten()).find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == proto).map(|p| p.container_port)
        }
    }
}

/// The subsets for `svc` over `pods` (which already match its selector).
pub fn build_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let svc_ports = spec.ports.clone().unwrap_or_default();
    // ports (as a sortable key) → (ports, ready addresses, not-ready addresses)
    type Group = (Vec<EndpointPort>, Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<Vec<(String, i32, String)>, Group> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pod_ip(pod) else { continue };
        if matches!(pod_phase(pod), "Succeeded" | "Failed") || (is_deleting(&pod.metadata) && !publish_not_ready) {
            continue;
        }
        let addr = EndpointAddress {
            ip: ip.to_string(),
            node_name: Some(pod_node(pod).to_string()).filter(|n| !n.is_empty()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
            hostname: None,
        };
        let ready = publish_not_ready || is_pod_ready(pod);
        let mut ports: Vec<EndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                find_port(pod, sp).map(|port| EndpointPort {
                    name: sp.name.clone(),
                    port,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty() && !svc_ports.is_empty() {
            continue; // no port of the service resolves on this pod
        }
        ports.sort_by_key(|p| (p.name.clone(), p.port));
        let key: Vec<(String, i32, String)> = ports.iter().map(|p| (p.name.clone().unwrap_or_default(), p.port, p.protocol.clone().unwrap_or_default())).collect();
        let g = groups.entry(key).or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if ready {
            g.1.push(addr);
        } else {
            g.2.push(addr);
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// "name ip ready|notready [port=NAME:NUM]..." pods; the result written
    /// as "subset: ports | ready ips | not-ready ips" lines.
    fn check(svc_ports: serde_json::Value, pods: &[&str], expect: &[&str]) {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"selector": {"app": "x"}, "ports": svc_ports}})).unwrap();
        let pods: Vec<Arc<Pod>> = pods
            .iter()
            .map(|d| {
                let w: Vec<&str> = d.split_whitespace().collect();
                let ports: Vec<_> = w[3..].iter().filter_map(|x| x.strip_prefix("port=")).map(|p| {
                    let (n, num) = p.split_once(':').unwrap();
                    json!({"name": n, "containerPort": num.parse::<i32>().unwrap()})
                }).collect();
                let status = if w[2] == "ready" { "True" } else { "False" };
                let mut v = json!({"metadata": {"name": w[0], "namespace": "ns", "uid": w[0]},
                    "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports}]},
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": status}]}});
                if w[1] != "-" {
                    v["status"]["podIP"] = json!(w[1]);
                }
                if w.contains(&"deleting") {
                    v["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
                }
                Arc::new(serde_json::from_value(v).unwrap())
            })
            .collect();
        let got: Vec<String> = build_subsets(&svc, &pods)
            .iter()
            .map(|s| {
                let ports: Vec<String> = s.ports.iter().flatten().map(|p| format!("{}={}", p.name.clone().unwrap_or_default(), p.port)).collect();
                let ips = |a: &Option<Vec<EndpointAddress>>| a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>().join(",");
                format!("{} | {} | {}", ports.join(","), ips(&s.addresses), ips(&s.not_ready_addresses))
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn subsets() {
        let http = json!([{"name": "http", "port": 80, "targetPort": 8080}]);
        check(http.clone(), &["a 10.0.0.2 ready", "b 10.0.0.1 notready", "c - ready"], &["http=8080 | 10.0.0.2 | 10.0.0.1"]);
        check(http.clone(), &["a 10.0.0.2 ready deleting", "b 10.0.0.3 ready"], &["http=8080 | 10.0.0.3 | "]);
        check(http, &[], &[]);
        // Named target port resolved per pod; pods without it left out.
        let named = json!([{"name": "web", "port": 80, "targetPort": "web"}]);
        check(named, &["a 10.0.0.1 ready port=web:8080", "b 10.0.0.2 ready port=web:9090", "c 10.0.0.3 ready port=other:1", "d 10.0.0.4 notready port=web:8080"],
            &["web=8080 | 10.0.0.1 | 10.0.0.4", "web=9090 | 10.0.0.2 | "]);
        // No targetPort: the service port.
        check(json!([{"port": 53}]), &["a 10.0.0.1 ready"], &["=53 | 10.0.0.1 | "]);
    }
}
