//! rkube-agent: the node agent (Kubernetes' *kubelet*).
//!
//! So far this library holds the agent's side of the Container Runtime
//! Interface: a CRI client over a unix socket, and everything needed to run a
//! private containerd that the project owns (its config, CNI network and
//! locally built images). The launcher (`rkube up`) reuses the same modules.

pub mod runtime;
