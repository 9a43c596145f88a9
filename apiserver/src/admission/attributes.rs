//! The request as admission sees it (k8s.io/apiserver/pkg/admission:
//! `Attributes`, `Operation`): what is being written, where, and how.
//!
//! The chain ([`super`]) hands it to every plugin in turn. It imports
//! neither the chain nor any plugin: it is what they share.

/// What kind of write is being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// The request as admission sees it (admission.Attributes).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub operation: Operation,
    pub group: &'a str,
    /// Plural resource (`pods`).
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    /// The object's name from the URL; empty for create.
    pub name: &'a str,
}

impl<'a> Request<'a> {
    pub fn create(group: &'a str, resource: &'a str, namespace: &'a str) -> Self {
        Request { operation: Operation::Create, group, resource, subresource: "", namespace, name: "" }
    }

    /// A pod create — the case most plugins act on.
    pub fn is_pod_create(&self) -> bool {
        self.operation == Operation::Create && self.group.is_empty() && self.resource == "pods" && self.subresource.is_empty()
    }
}
