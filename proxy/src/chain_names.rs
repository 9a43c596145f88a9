//! The names of the per-service chains: `KUBE-SVC-`, `KUBE-EXT-` and
//! `KUBE-SEP-` followed by a hash of the service port's name (and the
//! endpoint's address), spelled exactly as kube-proxy spells them
//! (pkg/proxy/iptables/proxier.go, `servicePortPolicyClusterChain`,
//! `serviceExternalChainName`, `servicePortEndpointChainName`), so
//! `iptables -t nat -S` on an rkube node reads as on a kubeadm node and a
//! restarted proxy finds its own chains again.
//!
//! A leaf module: the model names each service port's chains when it builds
//! it, and the rules write them.

use sha2::{Digest, Sha256};

/// base32 (RFC 4648 standard alphabet, as Go's `base32.StdEncoding`) of the
/// SHA-256 of `input`, first 16 characters. 16 chars × 5 bits = the first
/// 10 bytes of the hash, so no padding question arises.
fn hash16(input: &[&str]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h = Sha256::new();
    for part in input {
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    // The first 10 bytes as an 80-bit big-endian number, then 16 groups of
    // 5 bits, most significant first.
    let acc = digest[..10].iter().fold(0u128, |a, b| (a << 8) | *b as u128);
    (0..16).rev().map(|i| ALPHABET[((acc >> (i * 5)) & 31) as usize] as char).collect()
}

/// `KUBE-SVC-` + hash of `ns/name:port` + protocol: upstream's
/// `servicePortPolicyClusterChain` (formerly `servicePortChainName`).
/// Stable across restarts, ≤ 28 characters as iptables requires.
pub fn service_port_chain_name(service_port_name: &str, protocol_lower: &str) -> String {
    format!("KUBE-SVC-{}", hash16(&[service_port_name, protocol_lower]))
}

/// `KUBE-EXT-` + the same hash: upstream's `serviceExternalChainName`.
pub fn service_external_chain_name(service_port_name: &str, protocol_lower: &str) -> String {
    format!("KUBE-EXT-{}", hash16(&[service_port_name, protocol_lower]))
}

/// `KUBE-SEP-` + hash of `ns/name:port` + protocol + `ip:port`: upstream's
/// `servicePortEndpointChainName`.
pub fn service_port_endpoint_chain_name(service_port_name: &str, protocol_lower: &str, endpoint: &str) -> String {
    format!("KUBE-SEP-{}", hash16(&[service_port_name, protocol_lower, endpoint]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: (&str, &str, Option<&str>), expected: &str) {
        let got = match input.2 {
            None => service_port_chain_name(input.0, input.1),
            Some(ep) => service_port_endpoint_chain_name(input.0, input.1, ep),
        };
        assert_eq!(got, expected);
    }

    /// Values from upstream kube-proxy's own tests (proxier_test.go).
    #[test]
    fn chain_names_match_upstream() {
        check(("ns1/svc1:p80", "tcp", None), "KUBE-SVC-XPGD46QRK7WJZT7O");
        check(("ns1/svc1:p80", "tcp", Some("10.180.0.1:80")), "KUBE-SEP-SXIVWICOYRO3J4NJ");
    }

    #[test]
    fn hash_is_base32_of_sha256_prefix() {
        // base32("") of sha256("") = 4OYMIQUY7QOBJGX36TEJS35ZEQT24QPEMSNZGTFESWMRW6CSXBKQ====
        assert_eq!(hash16(&[""]), "4OYMIQUY7QOBJGX3");
    }
}
