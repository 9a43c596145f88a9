//! `rkube bench apiserver`: the apiserver against a real etcd, measured in
//! one run so the figures can be compared:
//! 1. the raw etcd ceiling, N concurrent clients, values of exactly a stored
//!    pod's bytes, each on a twin etcd started the same way (see
//!    `procs::CeilingEtcd`): the **create-if-absent transaction** every pod
//!    create is (the primary ceiling), and plain puts (for reference);
//! 2. apiserver pod creates/s with the same N, and their ratio to each ceiling;
//! 3. LIST latency of all pods (served from the watch cache);
//! 4. apiserver resident memory while holding them;
//! 5. watch fan-out: event delivery latency to many watchers.
//!
//! With `--json PATH` it writes the `rkube bench` JSON shape
//! ([`BenchJson`]): the environment, the headline figures, the details.

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

use rkube_scheduler::perf::{percentile_figures, Figure, Stats};

use super::bench_scheduler::BenchJson;
use super::bench_scheduler_e2e::{etcd_ceiling, CeilingOp};
use crate::bench_env::Environment;
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

/// A percentile for the terminal: its value, or `–` when there are too
/// few samples for it (see `Stats::of`).
fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.1} ms"))
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
    let env = Environment::capture();
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

    // 1. The raw etcd ceiling, same concurrency, each on its own twin etcd
    // (see `procs::CeilingEtcd` for why not on the measured one). The value
    // is exactly what the apiserver stores for one pod (read back from etcd
    // after one create), so the ceiling and the creates write the same bytes.
    let (s, b) = request(&client, "POST", &format!("{base}/api/v1/namespaces/bench/pods"), Some(serde_json::to_vec(&pod("bench", "sample"))?)).await?;
    if s != 201 {
        bail!("sample create: {s} {}", String::from_utf8_lossy(&b));
    }
    let mut probe = etcd_client::Client::connect([etcd_url.as_str()], None).await?;
    let raw_value = probe.get("/registry/pods/bench/sample", None).await?.kvs().first().context("sample pod not in etcd")?.value().to_vec();
    request(&client, "DELETE", &format!("{base}/api/v1/namespaces/bench/pods/sample"), None).await?;
    let mut ceilings = Vec::new();
    for op in [CeilingOp::CreateTxn, CeilingOp::Put] {
        let twin = procs::CeilingEtcd::new(&dir.path().join(format!("ceiling-{}", ceilings.len())), o.etcd.as_deref())?;
        let run = etcd_ceiling(&twin, op, o.pods, &raw_value, o.concurrency).await?;
        println!(
            "  raw etcd {:<21} {:>9.0} /s  ({} values of {} bytes in {:.2}s, {} clients)",
            format!("{}:", run.operation),
            run.per_second,
            run.operations,
            run.value_bytes,
            run.seconds,
            run.in_flight
        );
        ceilings.push(run);
    }
    let (txn_rate, put_rate) = (ceilings[0].per_second, ceilings[1].per_second);

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
    let create_lat = Stats::of(&lat.lock().unwrap());
    println!(
        "  apiserver creates:            {create_rate:>9.0} /s  ({:.2}× the create-txn ceiling, {:.2}× the put one; latency p50 {}, p99 {}; request {} bytes)",
        create_rate / txn_rate,
        create_rate / put_rate,
        ms(create_lat.p50),
        ms(create_lat.p99),
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
    let (list, list_rv0) = (Stats::of(&list_ms), Stats::of(&list_rv0_ms));
    println!(
        "  LIST {items} pods:  median of {}: {} consistent, {} at rv=0  ({:.1} MiB)",
        list.n,
        ms(list.p50),
        ms(list_rv0.p50),
        list_bytes as f64 / 1048576.0
    );

    // 4. Resident memory while holding them.
    let rss_mib = api.rss_kib().unwrap_or(0) as f64 / 1024.0;
    println!("  apiserver RSS:                {rss_mib:>9.0} MiB holding {items} pods");

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
    let watch_lat = Stats::of(&delays.lock().unwrap());
    println!(
        "  watch fan-out:                p50 {}, p99 {}  ({} events × {} watchers, {} deliveries)",
        ms(watch_lat.p50),
        ms(watch_lat.p99),
        o.watch_events,
        o.watchers,
        watch_lat.n
    );

    let clients = o.concurrency;
    let mut figures = vec![
        Figure::higher("apiserver.creates_per_s", format!("apiserver pod creates/s, {clients} clients"), "creates/s", create_rate),
        Figure::higher(
            "apiserver.etcd_create_txn_per_s",
            format!("raw etcd create-if-absent txn/s (the apiserver's create), {} B values, {clients} clients, twin etcd", raw_value.len()),
            "txn/s",
            txn_rate,
        ),
        Figure::higher(
            "apiserver.etcd_put_per_s",
            format!("raw etcd plain puts/s, {} B values, {clients} clients, twin etcd", raw_value.len()),
            "puts/s",
            put_rate,
        ),
        Figure::higher("apiserver.ratio_creates_to_txn", "apiserver creates/s ÷ raw etcd create txn/s (primary ratio)", "ratio", create_rate / txn_rate),
        Figure::higher("apiserver.ratio_creates_to_put", "apiserver creates/s ÷ raw etcd plain puts/s", "ratio", create_rate / put_rate),
    ];
    percentile_figures(&mut figures, "apiserver.create_latency_{p}_ms", "apiserver pod create latency", "ms", &create_lat);
    if let Some(v) = list.p50 {
        figures.push(Figure::lower("apiserver.list_ms", format!("LIST of {items} pods, consistent, median of {}", list.n), "ms", v));
    }
    if let Some(v) = list_rv0.p50 {
        figures.push(Figure::lower("apiserver.list_rv0_ms", format!("LIST of {items} pods at resourceVersion=0, median of {}", list_rv0.n), "ms", v));
    }
    if rss_mib > 0.0 {
        figures.push(Figure::lower("apiserver.rss_mib", format!("apiserver resident memory holding {items} pods"), "MiB", rss_mib));
    }
    percentile_figures(
        &mut figures,
        "apiserver.watch_fanout_{p}_ms",
        &format!("watch delivery latency, {} watchers", o.watchers),
        "ms",
        &watch_lat,
    );
    figures.retain(|f| f.value.is_finite());

    let details = json!({
        "pods": o.pods, "concurrency": o.concurrency, "watchers": o.watchers, "watch_events": o.watch_events,
        "etcd_ceiling": {"create_txn": &ceilings[0], "put": &ceilings[1]},
        "raw_etcd_create_txn_per_sec": txn_rate, "raw_etcd_puts_per_sec": put_rate,
        "creates_per_sec": create_rate, "creates_over_txn": create_rate / txn_rate, "creates_over_put": create_rate / put_rate,
        "create_latency_ms": create_lat,
        "list_pods": items, "list_ms": list, "list_rv0_ms": list_rv0,
        "list_ms_p50": list.p50, "list_rv0_ms_p50": list_rv0.p50,
        "list_bytes": list_bytes, "apiserver_rss_mib": rss_mib,
        "watch_latency_ms": watch_lat, "watch_deliveries": watch_lat.n,
    });
    if let Some(p) = &o.json {
        BenchJson { bench: "apiserver", environment: &env, figures: &figures, details }.write(p)?;
        println!("  figures written to {}", p.display());
    }
    drop(api);
    Ok(())
}

