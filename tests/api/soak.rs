//! A bounded soak: the real gateway process in front of the phpIPAM fake, mixed operations at a
//! steady rate for ~40 s on loopback. Open file descriptors and resident memory of the gateway
//! process must stay flat after warm-up (a leak of connections, tasks or buffers would grow them).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::resilience_crash::start;
use crate::support::DEMO_PASSWORD;
use crate::support::matrix::{phpipam_config, seed_phpipam};
use crate::support::phpipam_fake::{FakePhpipam, FakeState};

const WARM_UP: Duration = Duration::from_secs(10);
const SOAK: Duration = Duration::from_secs(30);
const PERIOD: Duration = Duration::from_millis(20);

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_operations_at_a_steady_rate_keep_fds_and_memory_flat() {
    let mut state = FakeState::empty();
    let lab = seed_phpipam(&mut state);
    let fake = FakePhpipam::start_with(state).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gw.toml");
    std::fs::write(&config, phpipam_config(&fake.url, &lab)).expect("config");
    let gw = start(dir.path(), &config);
    let pid = gw.child.id();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let url = |p: &str| format!("{}{p}", gw.base_url);
    let nets: Value = client
        .get(url("/api/v1/networks"))
        .basic_auth("demo", Some(DEMO_PASSWORD))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let net = nets["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .find(|n| n["name"] == "lab-servers")
        .expect("lab-servers")["id"]
        .clone();

    let started = Instant::now();
    let mut baseline: Option<(usize, u64)> = None;
    let mut samples = Vec::new();
    let mut ops = 0u32;
    let mut tick = tokio::time::interval(PERIOD);
    while started.elapsed() < WARM_UP + SOAK {
        tick.tick().await;
        let i = ops;
        ops += 1;
        let ok = match i % 4 {
            0 => client
                .get(url("/api/v1/networks?family=ipv4"))
                .basic_auth("demo", Some(DEMO_PASSWORD))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200),
            1 => {
                let r = client
                    .post(url("/api/v1/allocations"))
                    .basic_auth("demo", Some(DEMO_PASSWORD))
                    .json(&json!({"owner": format!("soak-{}", i / 4), "networks": [net]}))
                    .send()
                    .await
                    .expect("allocate");
                r.status() == 201
            }
            2 => {
                let found: Value = client
                    .get(url(&format!("/api/v1/allocations?owner=soak-{}", i / 4)))
                    .basic_auth("demo", Some(DEMO_PASSWORD))
                    .send()
                    .await
                    .expect("find")
                    .json()
                    .await
                    .expect("json");
                let id = found["allocations"][0]["id"]
                    .as_str()
                    .expect("allocation id");
                client
                    .patch(url(&format!("/api/v1/allocations/{id}")))
                    .basic_auth("demo", Some(DEMO_PASSWORD))
                    .json(&json!({"mac": format!("00:50:56:00:{:02x}:{:02x}", (i / 4) >> 8 & 0xff, (i / 4) & 0xff)}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
            _ => client
                .delete(url(&format!("/api/v1/allocations?owner=soak-{}", i / 4)))
                .basic_auth("demo", Some(DEMO_PASSWORD))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200),
        };
        assert!(ok, "operation {i} failed");
        if started.elapsed() >= WARM_UP && baseline.is_none() {
            baseline = Some((fds(pid), rss_kib(pid)));
        }
        if i.is_multiple_of(250) {
            samples.push((started.elapsed().as_secs(), fds(pid), rss_kib(pid)));
        }
    }
    let (fd0, rss0) = baseline.expect("baseline taken");
    let (fd1, rss1) = (fds(pid), rss_kib(pid));
    eprintln!(
        "soak: {ops} operations; (s, fds, RSS KiB) samples: {samples:?}; end fds {fd1}, RSS {rss1} KiB"
    );
    assert!(
        fd1 <= fd0 + 4,
        "open fds grew from {fd0} to {fd1}: {samples:?}"
    );
    assert!(
        rss1 <= rss0 + 16 * 1024,
        "RSS grew from {rss0} KiB to {rss1} KiB: {samples:?}"
    );
}
