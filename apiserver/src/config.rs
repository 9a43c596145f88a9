//! Command-line flags, named as kube-apiserver names them.

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(name = "rkube-apiserver", version, about = "The rkube API server: the Kubernetes API on etcd.")]
pub struct Config {
    /// etcd endpoints, comma-separated (e.g. http://127.0.0.1:2379).
    #[arg(long = "etcd-servers", value_delimiter = ',', required = true)]
    pub etcd_servers: Vec<String>,

    /// The prefix under which every key is stored in etcd.
    #[arg(long = "etcd-prefix", default_value = "/registry")]
    pub etcd_prefix: String,

    /// Address for the secure port (TLS comes with authentication; until
    /// then only the insecure port is served).
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: String,

    /// Plain-HTTP port on the insecure bind address with no authentication
    /// and no authorization, as the old kube-apiserver's `--insecure-port`.
    #[arg(long = "insecure-port", default_value_t = 8080)]
    pub insecure_port: u16,

    /// Address of the insecure port. Kept on loopback by default: anyone who
    /// reaches it is cluster admin.
    #[arg(long = "insecure-bind-address", default_value = "127.0.0.1")]
    pub insecure_bind_address: String,

    /// CIDR from which Service ClusterIPs are allocated.
    #[arg(long = "service-cluster-ip-range", default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,

    /// Range of NodePorts, inclusive.
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    pub service_node_port_range: String,

    /// How often the ClusterIP and NodePort repair loops run (leaked values
    /// freed, unmarked ones marked). rkube's own flag: upstream fixes it at
    /// 3 minutes. 0 turns the loops off.
    #[arg(long = "service-repair-interval", default_value = "3m", value_parser = machinery::duration::parse)]
    pub service_repair_interval: std::time::Duration,

    /// TLS port. Served when --tls-cert-file is given.
    #[arg(long = "secure-port", default_value_t = 6443)]
    pub secure_port: u16,

    /// Serving certificate (PEM) for the secure port.
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<std::path::PathBuf>,

    /// Serving key (PEM) for the secure port.
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<std::path::PathBuf>,

    /// CA bundle that signs client certificates (user = CN, groups = O).
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<std::path::PathBuf>,

    /// Static bearer tokens: a CSV of token,user,uid,"group1,group2".
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<std::path::PathBuf>,

    /// Let requests without credentials in as system:anonymous. A Go bool
    /// flag: `--anonymous-auth` alone means true; a value needs `=`.
    #[arg(long = "anonymous-auth", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub anonymous_auth: bool,

    /// Ordered authorizers for the secure port: AlwaysAllow, AlwaysDeny, Node, RBAC.
    #[arg(long = "authorization-mode", default_value = "AlwaysAllow")]
    pub authorization_mode: String,

    /// Admission plugins to enable beyond the defaults (comma-separated).
    #[arg(long = "enable-admission-plugins", default_value = "")]
    pub enable_admission_plugins: String,

    /// Admission plugins to disable (comma-separated).
    #[arg(long = "disable-admission-plugins", default_value = "")]
    pub disable_admission_plugins: String,

    /// DefaultTolerationSeconds: how long new pods tolerate
    /// `node.kubernetes.io/not-ready:NoExecute` (as kube-apiserver).
    #[arg(long = "default-not-ready-toleration-seconds", default_value_t = 300, allow_negative_numbers = true)]
    pub default_not_ready_toleration_seconds: i64,

    /// DefaultTolerationSeconds: how long new pods tolerate
    /// `node.kubernetes.io/unreachable:NoExecute` (as kube-apiserver).
    #[arg(long = "default-unreachable-toleration-seconds", default_value_t = 300, allow_negative_numbers = true)]
    pub default_unreachable_toleration_seconds: i64,

    /// How long to wait for etcd at start before giving up.
    #[arg(long = "etcd-connect-timeout", default_value = "10s", value_parser = machinery::duration::parse)]
    pub etcd_connect_timeout: std::time::Duration,

    /// Bound on one etcd call, failovers to other members included. When
    /// etcd cannot answer in time (it lost quorum) the request gets a 504
    /// `Timeout` at once rather than hanging. (rkube's flag: upstream only
    /// bounds the whole request, with --request-timeout.)
    #[arg(long = "etcd-request-timeout", default_value = "5s", value_parser = machinery::duration::parse)]
    pub etcd_request_timeout: std::time::Duration,

    /// The address this apiserver advertises to the cluster: its entry in
    /// the `kubernetes` Service's Endpoints (and its master lease). Defaults
    /// to --bind-address when that is a specific address and TLS is served.
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<String>,

    /// How the `kubernetes` Service's Endpoints are kept: `lease` (each
    /// apiserver keeps a master lease in etcd; the live ones are listed) or
    /// `none`.
    #[arg(long = "endpoint-reconciler-type", default_value = "lease")]
    pub endpoint_reconciler_type: String,

    /// TTL of this apiserver's master lease (upstream's
    /// MasterEndpointReconcileTTL, 15 s); it is refreshed every 2/3 of it.
    /// Tests shorten it to see dead apiservers pruned quickly.
    #[arg(long = "master-endpoint-reconcile-ttl", default_value = "15s", value_parser = machinery::duration::parse)]
    pub master_endpoint_reconcile_ttl: std::time::Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_auth_is_a_go_bool_flag() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["rkube-apiserver", "--etcd-servers=http://127.0.0.1:2379"];
            args.extend_from_slice(extra);
            Config::try_parse_from(args).map(|c| c.anonymous_auth)
        };
        assert!(parse(&[]).unwrap());
        assert!(parse(&["--anonymous-auth"]).unwrap());
        assert!(parse(&["--anonymous-auth", "--insecure-port=0"]).unwrap());
        assert!(!parse(&["--anonymous-auth=false"]).unwrap());
        assert!(parse(&["--anonymous-auth=true"]).unwrap());
        // As pflag: a bool takes its value only after `=`.
        assert!(parse(&["--anonymous-auth", "false"]).is_err());
    }
}
