//! Core figures, printed: `cargo bench --bench core`.
//!
//! - allocations/s through the service on the embedded backend (64 concurrent callers), and
//!   through the HTTP API;
//! - listing latency for 10,000 networks: cold (backend read), warm from cache in the service,
//!   and warm over HTTP (JSON encoding included);
//! - resident memory after reading the config, and with those 10,000 networks cached.
//!
//! The 10,000 networks come from a JSON `inventory` file, as the README advises for large
//! inventories; `IPAMGW_BENCH_INLINE=1` writes them as `[[backends.local.networks]]` tables of
//! the config instead, to compare the two figures.
//!
//! Plain HTTP on loopback: TLS cost is measured separately later. Numbers vary with the machine;
//! compare figures from one run.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam_gateway::Application;
use ipam_gateway::backends::CallContext;
use ipam_gateway::config::{Config, TlsMode};
use ipam_gateway::domain::{NetworkId, Owner, RecordDetails};
use ipam_gateway::service::{AllocationRequest, Caller};

const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$mG+Bt3ThSoG+7SkVqpyauQ$/9lV+JzeO8xIswWra3gFvERnnMYWZBWN86mkcv0xGvo";
const PASSWORD: &str = "demo-secret";

fn config(networks: usize, dir: &std::path::Path) -> std::io::Result<String> {
    let inline = std::env::var_os("IPAMGW_BENCH_INLINE").is_some();
    let inventory = dir.join("inventory.json");
    let mut c = format!(
        "[clients.demo]\npassword_hash = \"{PASSWORD_HASH}\"\nbackend = \"local\"\n\
         [backends.local]\nkind = \"embedded\"\n"
    );
    if !inline {
        let _ = writeln!(c, "inventory = \"{}\"", inventory.display());
    }
    c.push_str(
        "[[backends.local.networks]]\nname = \"big\"\ncidr = \"10.255.0.0/16\"\ngateway = \"10.255.0.1\"\n",
    );
    let mut file = String::from("{\"networks\": [\n");
    for i in 0..networks {
        let (a, b) = (i / 256, i % 256);
        if inline {
            let _ = write!(
                c,
                "[[backends.local.networks]]\nname = \"net-{i}\"\ncidr = \"10.{a}.{b}.0/24\"\n\
                 gateway = \"10.{a}.{b}.1\"\ndns_servers = [\"10.0.0.53\"]\ndomain = \"bench.example\"\n\
                 tags = {{ env = \"bench\" }}\n",
            );
        } else {
            let _ = writeln!(
                file,
                "{}{{\"name\": \"net-{i}\", \"cidr\": \"10.{a}.{b}.0/24\", \"gateway\": \"10.{a}.{b}.1\", \
                 \"dns_servers\": [\"10.0.0.53\"], \"domain\": \"bench.example\", \
                 \"tags\": {{\"env\": \"bench\"}}}}",
                if i == 0 { "" } else { "," }
            );
        }
    }
    file.push_str("]}\n");
    if !inline {
        std::fs::write(&inventory, file)?;
    }
    println!(
        "10,000 networks {}",
        if inline {
            "inline in the config (IPAMGW_BENCH_INLINE)".to_owned()
        } else {
            format!("in {}", inventory.display())
        }
    );
    Ok(c)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    }
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let text = config(10_000, dir.path())?;
    let t = Instant::now();
    let mut cfg = Config::from_toml(&text)?;
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.server.state_dir = dir.path().to_owned();
    cfg.server.tls.mode = TlsMode::Off;
    cfg.metrics.enabled = false;
    let settings = cfg.validate()?;
    println!(
        "config with 10,001 networks parsed and validated in {}",
        ms(t.elapsed())
    );
    println!("RSS with the config read: {:.1} MiB", rss_mib());
    let t = Instant::now();
    let app = Application::build(settings).await?;
    println!(
        "application built (data file seeded) in {}",
        ms(t.elapsed())
    );
    let ipam = app.ipam();
    let base = app.base_url();
    let shutdown = app.shutdown_handle();
    let server = tokio::spawn(app.run_until_stopped());
    let caller = Caller {
        name: "bench".into(),
        backend: "local".into(),
        cx: CallContext::default(),
    };

    // --- Listings -------------------------------------------------------------------------
    let t = Instant::now();
    let snapshot = ipam.network_snapshot(&caller).await?;
    let cold = t.elapsed();
    assert_eq!(snapshot.len(), 10_001);
    let mut warm = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        let s = ipam.network_snapshot(&caller).await?;
        warm.push(t.elapsed());
        std::hint::black_box(s);
    }
    warm.sort();
    println!("\nlisting 10,001 networks, service level");
    println!("  cold (embedded store read) : {}", ms(cold));
    println!(
        "  warm (moka cache)          : p50 {}  p99 {}",
        ms(percentile(&warm, 0.5)),
        ms(percentile(&warm, 0.99))
    );
    let client = reqwest::Client::builder().build()?;
    let mut http = Vec::with_capacity(50);
    let mut bytes = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let body = client
            .get(format!("{base}/api/v1/networks"))
            .basic_auth("demo", Some(PASSWORD))
            .send()
            .await?
            .bytes()
            .await?;
        http.push(t.elapsed());
        bytes = body.len();
    }
    http.sort();
    println!(
        "listing 10,001 networks over HTTP (warm, {:.1} MiB JSON): p50 {}  p99 {}",
        bytes as f64 / 1048576.0,
        ms(percentile(&http, 0.5)),
        ms(percentile(&http, 0.99))
    );
    println!("RSS with 10,001 networks cached: {:.1} MiB", rss_mib());

    // --- Allocations ----------------------------------------------------------------------
    let big = NetworkId::new("local", "default/10.255.0.0/16");
    let ipam2 = ipam.clone();
    let n = 2000usize;
    let concurrency = 64usize;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (ipam, caller, big) = (ipam2.clone(), caller.clone(), big.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            for i in (w..n).step_by(concurrency) {
                let req = AllocationRequest {
                    owner: Owner::parse(&format!("svc-{i}")).expect("owner"),
                    networks: vec![big.clone()],
                    address: None,
                    details: RecordDetails::default(),
                    aliases: Vec::new(),
                };
                ipam.allocate(&caller, &req).await.expect("allocate");
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    let el = t.elapsed();
    println!(
        "\nallocations through the service, embedded backend, {concurrency} concurrent: {total} in {} = {:.0}/s",
        ms(el),
        total as f64 / el.as_secs_f64()
    );

    let n = 1000usize;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, base, big) = (client.clone(), base.clone(), big.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            for i in (w..n).step_by(concurrency) {
                let r = client
                    .post(format!("{base}/api/v1/allocations"))
                    .basic_auth("demo", Some(PASSWORD))
                    .json(&serde_json::json!({"owner": format!("http-{i}"), "networks": [big.as_str()]}))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status(), 201);
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    let el = t.elapsed();
    println!(
        "allocations through the HTTP API, embedded backend, {concurrency} concurrent: {total} in {} = {:.0}/s",
        ms(el),
        total as f64 / el.as_secs_f64()
    );
    println!("RSS at the end: {:.1} MiB", rss_mib());
    shutdown.shutdown();
    let _ = Arc::new(server);
    Ok(())
}
