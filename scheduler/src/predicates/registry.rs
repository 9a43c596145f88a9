//! The predicates by name (upstream's in-tree plugin registry,
//! `plugins/registry.go`), and the order upstream's default profile runs
//! them in. The configuration ([`crate::config`]) picks from these.

use super::{host_ports, inter_pod_anti_affinity, node_affinity, node_name, node_unschedulable, resources_fit, taint_toleration, Predicate};

/// Every predicate by name, in upstream's default order.
pub const DEFAULT_ORDER: &[&str] = &[
    node_unschedulable::NAME,
    node_name::NAME,
    taint_toleration::NAME,
    node_affinity::NAME,
    host_ports::NAME,
    resources_fit::NAME,
    inter_pod_anti_affinity::NAME,
];

/// Build a predicate from its configured name.
pub fn by_name(name: &str) -> Option<Box<dyn Predicate>> {
    Some(match name {
        node_unschedulable::NAME => Box::new(node_unschedulable::NodeUnschedulable),
        node_name::NAME => Box::new(node_name::NodeName),
        taint_toleration::NAME => Box::new(taint_toleration::TaintToleration),
        node_affinity::NAME => Box::new(node_affinity::NodeAffinity),
        host_ports::NAME => Box::new(host_ports::NodePorts),
        resources_fit::NAME => Box::new(resources_fit::NodeResourcesFit),
        inter_pod_anti_affinity::NAME => Box::new(inter_pod_anti_affinity::InterPodAntiAffinity),
        _ => return None,
    })
}
