//! `rkube certs`: the cluster's certificates, keys and kubeconfigs
//! ([`crate::cluster::pki`], which explains them) written to a directory, to
//! run the components by hand.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::cluster::pki;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Directory the certificates, keys and kubeconfigs are written to.
    #[arg(long, default_value = "pki")]
    pub dir: PathBuf,
    /// The apiserver URL written into the kubeconfigs.
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    pub server: String,
    /// Extra names or IP addresses for the apiserver serving certificate (repeatable).
    #[arg(long = "apiserver-san")]
    pub apiserver_sans: Vec<String>,
    /// The `kubernetes` Service's cluster IP: the first address of the service CIDR.
    #[arg(long, default_value = "10.96.0.1")]
    pub service_ip: IpAddr,
    /// A node to make a client certificate and kubeconfig for (repeatable).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Validity of the component certificates, in days (the CA gets ten years).
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Make a new CA even if one exists (every certificate signed by the old one stops working).
    #[arg(long)]
    pub force: bool,
    /// The cluster name used in the kubeconfigs.
    #[arg(long, default_value = "rkube")]
    pub cluster_name: String,
}

impl Options {
    fn config(&self) -> pki::Config {
        pki::Config {
            dir: self.dir.clone(),
            server: self.server.clone(),
            apiserver_sans: self.apiserver_sans.clone(),
            service_ip: self.service_ip,
            nodes: self.nodes.clone(),
            days: self.days,
            force: self.force,
            cluster_name: self.cluster_name.clone(),
        }
    }
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let written = pki::generate(&o.config())?;
    for p in &written {
        println!("wrote {}", p.display());
    }
    let dir = o.dir.display();
    println!();
    println!("apiserver: --tls-cert-file={dir}/apiserver.crt --tls-private-key-file={dir}/apiserver.key --client-ca-file={dir}/ca.crt");
    println!("kubectl:   KUBECONFIG={dir}/admin.kubeconfig kubectl get nodes");
    Ok(())
}
