//! `rkube bench apiserver`: the apiserver against a real etcd, measured in
//! one run so the figures can be compared:
//! 1. raw etcd puts/s of pod-sized JSON values, N concurrent clients — the ceiling
//!    (on a twin etcd started the same way, see `procs::CeilingEtcd`);
//! 2. apiserver pod creates/s with the same N (each create is one etcd transaction);
//! 3. LIST latency of all pods (served from the watch cache);
//! 4. apiserver resident memory while holding them;
//! 5. watch fan-out: event delivery latency to many watchers (p50/p99).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::procs;

#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Concurrent clients for the write phases.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Pods to create (and then to list).
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Watchers for the fan-out phase.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Events sent to the watchers.
    #[arg(long, default_value_t = 200)]
    pub watch_events: usize,
    /// Use this etcd instead of starting a private one (it must be empty).
    #[arg(long)]
    pub etcd: Option<String>,
    /// Write the figures as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn pod(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "bench", "tier": "web", "pod-template-hash": "7d9f8c6b5"}},
        "spec": {"containers": [{"name": "web", "image": "docker.io/rkube/busybox:1",
            "command": ["httpd", "-f", "-p", "8080"], "ports": [{"containerPort": 8080, "name": "http"}],
            "env": [{"name": "MODE", "value": "bench"}, {"name": "LEVEL", "value": "info"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 5}}],
            "nodeSelector": {"kubernetes.io/os": "linux"}}
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn request(client: &HttpClient, method: &str, url: &str, body: Option<Vec<u8>>) -> anyhow::Result<(u16, Bytes)> {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

pub async fn run(o: Options) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("rkube-bench-").tempdir()?;
    let (_etcd, etcd_url) = match &o.etcd {
        Some(u) => (None, u.clone()),
        None => {
            let (p, u) = procs::start_etcd(dir.path())?;
            (Some(p), u)
        }
    };
    let (api, base) = procs::start_apiserver(dir.path(), &etcd_url).await?;
    let client: HttpClient = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(o.concurrency * 2).build_http();
    for ns in ["bench", "bench-watch"] {
        let (s, b) = request(&client, "POST", &format!("{base}/api/v1/namespaces"), Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).to_string().into_bytes())).await?;
        if s != 201 {
            bail!("creating namespace {ns}: {s} {}", String::from_utf8_lossy(&b));
        }
        // No controller runs here: make the `default` ServiceAccount the
        // ServiceAccount admission plugin looks up on every pod create.
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
        let (s, b) = request(&client, "POST", &format!("{base}/api/v1/namespaces/{ns}/serviceaccounts"), Some(sa.to_string().into_bytes())).await?;
        if s != 201 && s != 409 {
            bail!("creating serviceaccount {ns}/default: {s} {}", String::from_utf8_lossy(&b));
        }
    }
    let value_size = serde_json::to_vec(&pod("bench", "bench-00000"))?.len();
    println!("rkube bench apiserver: {} pods, {} concurrent clients, {} watchers (etcd {etcd_url})", o.pods, o.concurrency, o.watchers);

    // 1. Raw etcd puts of pod-sized values, same concurrency.
    // The raw value is exactly what the apiserver stores for one pod (read
    // back from etcd after one create), so both phases write the same bytes.
    let (s, b) = request(&client, "POST", &format!("{base}/api/v1/namespaces/bench/pods"), Some(serde_json::to_vec(&pod("bench", "sample"))?)).await?;
    if s != 201 {
        bail!("sample create: {s} {}", String::from_utf8_lossy(&b));
    }
    let mut probe = etcd_client::Client::connect([etcd_url.as_str()], None).await?;
    let raw_value = probe.get("/registry/pods/bench/sample", None).await?.kvs().first().context("sample pod not in etcd")?.value().to_vec();
    request(&client, "DELETE", &format!("{base}/api/v1/namespaces/bench/pods/sample"), None).await?;
    // On a twin etcd: see `procs::CeilingEtcd` for why not on this one.
    let ceiling = procs::CeilingEtcd::new(dir.path(), o.etcd.as_deref())?;
    let etcd = etcd_client::Client::connect([ceiling.url.as_str()], None).await?;
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..o.concurrency {
        let mut etcd = etcd.clone();
        let next = next.clone();
        let value = raw_value.clone();
        let total = o.pods;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                etcd.put(format!("/bench-raw/pods/bench/bench-{i:05}"), value.clone(), None).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let raw_secs = started.elapsed().as_secs_f64();
    let raw_rate = o.pods as f64 / raw_secs;
    ceiling.clear("/bench-raw/").await?;
    drop(ceiling);
    println!("  raw etcd puts:       {raw_rate:>9.0} /s  ({} values of {} bytes in {raw_secs:.2}s)", o.pods, raw_value.len());

    // 2. Pod creates through the apiserver, same concurrency.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(o.pods)));
    let mut tasks = Vec::new();
    for _ in 0..o.concurrency {
        let client = client.clone();
        let next = next.clone();
        let lat = lat.clone();
        let url = format!("{base}/api/v1/namespaces/bench/pods");
        let total = o.pods;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = serde_json::to_vec(&pod("bench", &format!("bench-{i:05}")))?;
                let t = Instant::now();
                let (s, b) = request(&client, "POST", &url, Some(body)).await?;
                if s != 201 {
                    bail!("create: {s} {}", String::from_utf8_lossy(&b));
                }
                lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let create_secs = started.elapsed().as_secs_f64();
    let create_rate = o.pods as f64 / create_secs;
    let mut cl = lat.lock().unwrap().clone();
    cl.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  apiserver creates:   {create_rate:>9.0} /s  ({:.2}× raw etcd; latency p50 {:.1} ms, p99 {:.1} ms; request {} bytes)",
        create_rate / raw_rate,
        percentile(&cl, 50.0),
        percentile(&cl, 99.0),
        value_size
    );

    // 3. LIST of every pod, consistent (cache waits for etcd's revision) and rv=0.
    let mut list_ms = Vec::new();
    let mut list_rv0_ms = Vec::new();
    let mut list_bytes = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let (s, b) = request(&client, "GET", &format!("{base}/api/v1/namespaces/bench/pods"), None).await?;
        list_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if s != 200 {
            bail!("list: {s}");
        }
        list_bytes = b.len();
        let t = Instant::now();
        request(&client, "GET", &format!("{base}/api/v1/namespaces/bench/pods?resourceVersion=0"), None).await?;
        list_rv0_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let items = serde_json::from_slice::<Value>(&request(&client, "GET", &format!("{base}/api/v1/namespaces/bench/pods?resourceVersion=0"), None).await?.1)?["items"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    list_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    list_rv0_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  LIST {items} pods:     p50 {:>6.1} ms consistent, {:.1} ms at rv=0  ({:.1} MiB)",
        percentile(&list_ms, 50.0),
        percentile(&list_rv0_ms, 50.0),
        list_bytes as f64 / 1048576.0
    );

    // 4. Resident memory while holding them.
    let rss_mib = api.rss_kib().unwrap_or(0) as f64 / 1024.0;
    println!("  apiserver RSS:       {rss_mib:>9.0} MiB holding {items} pods");

    // 5. Watch fan-out.
    let (_, b) = request(&client, "GET", &format!("{base}/api/v1/namespaces/bench-watch/pods"), None).await?;
    let rv = serde_json::from_slice::<Value>(&b)?["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let delays: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut watchers = Vec::new();
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    for _ in 0..o.watchers {
        let url = format!("{base}/api/v1/namespaces/bench-watch/pods?watch=true&resourceVersion={rv}&timeoutSeconds=120");
        let sent = sent.clone();
        let delays = delays.clone();
        let want = o.watch_events;
        let ready = ready.clone();
        // One connection per watcher, as separate clients would have.
        let c: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        watchers.push(tokio::spawn(async move {
            let resp = c.get(url.parse()?).await?;
            ready.add_permits(1);
            let mut body = resp.into_body().into_data_stream();
            let mut buf = Vec::new();
            let mut seen = 0;
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                let now = Instant::now();
                buf.extend_from_slice(&chunk);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let v: Value = serde_json::from_slice(&line)?;
                    if v["type"] == "ADDED" {
                        let name = v["object"]["metadata"]["name"].as_str().unwrap_or("").to_string();
                        if let Some(t0) = sent.lock().unwrap().get(&name) {
                            delays.lock().unwrap().push((now - *t0).as_secs_f64() * 1000.0);
                        }
                        seen += 1;
                        if seen == want {
                            return Ok::<_, anyhow::Error>(());
                        }
                    }
                }
            }
            Ok(())
        }));
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), ready.acquire_many(o.watchers as u32)).await;
    for i in 0..o.watch_events {
        let name = format!("w-{i:04}");
        sent.lock().unwrap().insert(name.clone(), Instant::now());
        let (s, _) = request(&client, "POST", &format!("{base}/api/v1/namespaces/bench-watch/pods"), Some(serde_json::to_vec(&pod("bench-watch", &name))?)).await?;
        if s != 201 {
            bail!("watch-phase create: {s}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in watchers {
        let _ = tokio::time::timeout(Duration::from_secs(60), w).await;
    }
    let mut d = delays.lock().unwrap().clone();
    d.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  watch fan-out:       p50 {:>6.1} ms, p99 {:.1} ms  ({} events × {} watchers, {} deliveries)",
        percentile(&d, 50.0),
        percentile(&d, 99.0),
        o.watch_events,
        o.watchers,
        d.len()
    );
    let report = json!({
        "pods": o.pods, "concurrency": o.concurrency, "watchers": o.watchers, "watch_events": o.watch_events,
        "raw_etcd_puts_per_sec": raw_rate, "creates_per_sec": create_rate, "creates_over_raw": create_rate / raw_rate,
        "create_latency_ms": {"p50": percentile(&cl, 50.0), "p99": percentile(&cl, 99.0)},
        "list_pods": items, "list_ms_p50": percentile(&list_ms, 50.0), "list_rv0_ms_p50": percentile(&list_rv0_ms, 50.0),
        "list_bytes": list_bytes, "apiserver_rss_mib": rss_mib,
        "watch_latency_ms": {"p50": percentile(&d, 50.0), "p99": percentile(&d, 99.0)}, "watch_deliveries": d.len(),
    });
    if let Some(p) = &o.json {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)?;
        println!("  figures written to {}", p.display());
    }
    drop(api);
    Ok(())
}

