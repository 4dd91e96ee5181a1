//! A bounded soak: the real gateway process in front of the phpIPAM fake, mixed operations at a
//! steady rate for ~40 s on loopback. Open file descriptors and resident memory of the gateway
//! process must stay flat after warm-up (a leak of connections, tasks or buffers would grow them).
//!
//! Plain `cargo test` lists it as ignored (40 s); `.ci/run` runs it with `--ignored`. Both figures
//! come from `/proc/<pid>/`: where that cannot be read the test fails before the soak starts
//! instead of comparing zeros.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::DEMO_PASSWORD;
use crate::support::gateway_process::{GatewayProcess, Stderr};
use crate::support::matrix::{phpipam_config, seed_phpipam};
use crate::support::phpipam_fake::{FakePhpipam, FakeState};

const WARM_UP: Duration = Duration::from_secs(10);
const SOAK: Duration = Duration::from_secs(30);
const PERIOD: Duration = Duration::from_millis(20);

/// Open file descriptors of `pid`, from `/proc/<pid>/fd`; an error, never 0, when unreadable.
fn fds(pid: u32) -> Result<usize, String> {
    let dir = format!("/proc/{pid}/fd");
    let n = std::fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .count();
    // A live process holds at least its standard streams.
    if n == 0 {
        return Err(format!("{dir} lists nothing"));
    }
    Ok(n)
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`); an error, never 0, when
/// unreadable or absent.
fn rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .filter(|&kib| kib > 0)
        .ok_or_else(|| format!("{path} has no VmRSS figure"))
}

/// Both figures of `pid`; the soak cannot compare what it cannot read.
fn measure(pid: u32) -> (usize, u64) {
    match (fds(pid), rss_kib(pid)) {
        (Ok(fd), Ok(rss)) => (fd, rss),
        (fd, rss) => panic!("the soak cannot measure process {pid}: fds {fd:?}, RSS {rss:?}"),
    }
}

#[test]
fn proc_readings_are_figures_or_errors_never_zeros() {
    let me = std::process::id();
    assert!(
        fds(me).expect("own fds") >= 3,
        "stdin, stdout, stderr at least"
    );
    assert!(rss_kib(me).expect("own RSS") > 0);
    // No process has this id (Linux's pid_max is at most 2^22): what the soak would read if
    // /proc/<pid> were unreadable.
    let gone = u32::MAX;
    let fd_err = fds(gone).expect_err("no fds of a missing process");
    assert!(fd_err.contains(&format!("/proc/{gone}/fd")), "{fd_err}");
    let rss_err = rss_kib(gone).expect_err("no RSS of a missing process");
    assert!(
        rss_err.contains(&format!("/proc/{gone}/status")),
        "{rss_err}"
    );
    assert!(
        std::panic::catch_unwind(|| measure(gone)).is_err(),
        "measuring a process that cannot be read fails"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 40 s soak: `.ci/run` runs it with --ignored"]
async fn mixed_operations_at_a_steady_rate_keep_fds_and_memory_flat() {
    let mut state = FakeState::empty();
    let lab = seed_phpipam(&mut state);
    let fake = FakePhpipam::start_with(state).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gw.toml");
    std::fs::write(&config, phpipam_config(&fake.url, &lab)).expect("config");
    let gw = GatewayProcess::with_config(dir.path(), &config, &[], Stderr::Discard);
    let pid = gw.child.id();
    // Fail now, not after 40 s, when the figures cannot be read.
    measure(pid);
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
            baseline = Some(measure(pid));
        }
        if i.is_multiple_of(250) {
            let (fd, rss) = measure(pid);
            samples.push((started.elapsed().as_secs(), fd, rss));
        }
    }
    let (fd0, rss0) = baseline.expect("baseline taken");
    let (fd1, rss1) = measure(pid);
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
