//! Predicate **NodePorts** (a.k.a. PodFitsHostPorts): a pod asking for
//! `hostPort: 80/TCP` cannot go where another pod already bound 80/TCP on
//! the same address (0.0.0.0 overlaps every address). Upstream plugin
//! `NodePorts`; like upstream, only regular containers' ports count.

use super::Predicate;
use crate::framework::{CycleState, FilterResult, Reason};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodePorts";

pub struct NodePorts;

impl Predicate for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> FilterResult {
        let conflict = pod.host_ports.iter().any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if conflict {
            Err(vec![Reason::PortsInUse])
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_info::testutil::*;
    use k8s_openapi::api::core::v1::{ContainerPort, Pod};

    fn with_ports(name: &str, ports: &[(&str, &str, i32)]) -> Pod {
        let mut p = pod_req(name, &[]);
        p.spec.as_mut().unwrap().containers[0].ports = Some(
            ports
                .iter()
                .map(|(ip, proto, port)| ContainerPort {
                    container_port: 8080,
                    host_ip: (!ip.is_empty()).then(|| ip.to_string()),
                    protocol: (!proto.is_empty()).then(|| proto.to_string()),
                    host_port: Some(*port),
                    ..Default::default()
                })
                .collect(),
        );
        p
    }

    fn check(existing: &[(&str, &str, i32)], wanted: &[(&str, &str, i32)], fits: bool) {
        let ni = node_info(node("n", &[]), vec![with_ports("old", existing)]);
        let got = NodePorts.filter(&CycleState::default(), &pinfo(with_ports("new", wanted)), &ni);
        let expected = if fits { Ok(()) } else { Err(vec![Reason::PortsInUse]) };
        assert_eq!(got, expected, "existing {existing:?} wanted {wanted:?}");
    }

    #[test]
    fn host_ports() {
        check(&[], &[], true);
        check(&[("", "", 80)], &[], true);
        check(&[], &[("", "", 80)], true);
        check(&[("", "", 80)], &[("", "", 80)], false);
        check(&[("", "", 80)], &[("", "", 81)], true);
        // Default protocol is TCP.
        check(&[("", "TCP", 80)], &[("", "", 80)], false);
        check(&[("", "UDP", 80)], &[("", "TCP", 80)], true);
        // Specific addresses only conflict with themselves or 0.0.0.0.
        check(&[("127.0.0.1", "", 80)], &[("127.0.0.2", "", 80)], true);
        check(&[("127.0.0.1", "", 80)], &[("127.0.0.1", "", 80)], false);
        check(&[("127.0.0.1", "", 80)], &[("0.0.0.0", "", 80)], false);
        check(&[("0.0.0.0", "", 80)], &[("10.0.0.1", "", 80)], false);
        // hostPort 0 means no host port.
        check(&[("", "", 80)], &[("", "", 0)], true);
    }
}
