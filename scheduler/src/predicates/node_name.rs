//! Predicate **NodeName**: a pod that already names its node
//! (`spec.nodeName`) can only go there. Upstream plugin `NodeName`.

use super::Predicate;
use crate::framework::{CycleState, FilterResult, Reason};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeName";

pub struct NodeName;

impl Predicate for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> FilterResult {
        match pod.node_name() {
            Some(n) if n != node.name => Err(vec![Reason::NodeNameMismatch]),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;

    fn check(pod_node: Option<&str>, node_name: &str, expected: FilterResult) {
        let mut p = pod_req("p", &[]);
        p.spec.as_mut().unwrap().node_name = pod_node.map(String::from);
        let ni = node_info(node(node_name, &[]), vec![]);
        assert_eq!(NodeName.filter(&CycleState::default(), &pinfo(p), &ni), expected);
    }

    #[test]
    fn node_name() {
        check(None, "a", Ok(()));
        check(Some(""), "a", Ok(()));
        check(Some("a"), "a", Ok(()));
        check(Some("b"), "a", Err(vec![Reason::NodeNameMismatch]));
    }
}
