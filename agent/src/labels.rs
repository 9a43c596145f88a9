//! The labels the agent puts on the CRI sandboxes and containers it creates
//! (upstream `pkg/kubelet/types/labels.go` and `kuberuntime/labels.go`).
//!
//! The kubelet keeps no state of its own about what it started: after a
//! restart it finds its sandboxes and containers again by these labels, and
//! the node API finds a request's pod and container by them. A leaf module:
//! the pod workers set and read them ([`crate::pods`]), and the node API
//! ([`crate::node_api`]) reads them.

pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
pub const INIT_CONTAINER_LABEL: &str = "io.rkube.container.init";
