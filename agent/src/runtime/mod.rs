//! The container runtime, seen from the node agent.
//!
//! Kubernetes' kubelet does not run containers: it asks a *container runtime*
//! over CRI (gRPC on a unix socket). These modules are that boundary:
//!
//! * [`cri`] — connect to a CRI socket, typed `RuntimeService` / `ImageService` clients.
//! * [`containerd`] — [`containerd::PrivateContainerd`]: a containerd with its own
//!   config, directories, socket, CNI network and images, cleaned up on drop.
//! * [`cni`] — the pod network: a bridge + host-local IPAM conflist for the node's podCIDR.
//! * [`images`] — small OCI images (busybox, pause) built locally, because no
//!   registry is reachable here, and imported with `ctr`.

pub mod cni;
pub mod containerd;
pub mod cri;
pub mod fake;
pub mod images;
