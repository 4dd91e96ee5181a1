//! Resilience of the phpIPAM and Infoblox backends (issue 7): a backend that is unreachable,
//! slow, answering 5xx or answering garbage gives every caller the contract's error, naming the
//! backend and the cause, within a bound set by the configured backend timeout; failed requests
//! leave no tasks or connections behind; `/readyz` follows the backend down and back up.
//!
//! The gateway talks to a stateful fake through a [`FaultProxy`] that injects the fault.
//!
//! **Pile-up proxy: the test runtime's alive-task count** (`RuntimeMetrics::num_alive_tasks`).
//! Each `#[tokio::test]` has its own runtime holding the gateway, the proxy and the fake; every
//! HTTP connection on either side (gateway server, gateway→IPAM pool, proxy) is a spawned task,
//! and so is any request the gateway runs detached (batches). A request that left a task, a
//! connection or a detached retry behind would show as a count that grows with the number of
//! failed requests. We measure after a first burst, then after two more bursts of the same size:
//! the count must not grow (small slack for pooled keep-alive connections being replaced).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::resilience_proxy::{Fault, FaultProxy};
use crate::support::infoblox_fake::{FakeWapi, FakeWapiState};
use crate::support::matrix::{
    BackendKind, infoblox_config, phpipam_config, seed_infoblox, seed_phpipam,
};
use crate::support::phpipam_fake::{FakePhpipam, FakeState};
use crate::support::{AppOptions, TestApp, spawn_with};
use crate::vra_common::{filled, placeholders, vra};

/// The backend timeout the gateway is configured with in these tests (`timeout_secs`).
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(1);
/// The bound every failing call must meet: the configured backend timeout (the retries of reads
/// share one deadline, so a slow backend costs one timeout, not one per attempt) plus generous
/// slack for a loaded 2-core CI machine. A correctness bound (the gateway neither waits for the
/// server's 30 s request timeout nor stacks timeouts), not a performance figure; measured: about
/// 1.0–1.06 s under the slow fault, under 0.4 s for the others.
pub const ERROR_BOUND: Duration = Duration::from_secs(BACKEND_TIMEOUT.as_secs() + 2);
/// The slow fault: well beyond the backend timeout.
pub const SLOW: Duration = Duration::from_secs(3);
/// Concurrent failing requests per burst.
const BURST: usize = 8;

pub struct Rig {
    pub app: TestApp,
    pub proxy: FaultProxy,
    /// The fake behind the proxy, held so it serves for as long as the rig lives.
    #[allow(dead_code, reason = "never read: holding it is its purpose")]
    pub phpipam: Option<FakePhpipam>,
    #[allow(dead_code, reason = "never read: holding it is its purpose")]
    pub infoblox: Option<FakeWapi>,
}

/// A gateway on the lab topology of `kind`, talking to its fake through a fault proxy, with the
/// backend timeout set to [`BACKEND_TIMEOUT`] (and `extra` TOML lines appended to the config).
pub async fn rig(kind: BackendKind) -> Rig {
    let secs = format!("timeout_secs = {}", BACKEND_TIMEOUT.as_secs());
    match kind {
        BackendKind::Phpipam => {
            let mut state = FakeState::empty();
            let lab = seed_phpipam(&mut state);
            let fake = FakePhpipam::start_with(state).await;
            let proxy = FaultProxy::start(&fake.url).await;
            let config = phpipam_config(&proxy.url, &lab).replace("timeout_secs = 10", &secs);
            assert!(config.contains(&secs));
            let app = spawn_with(AppOptions {
                config,
                tls: false,
                metrics: false,
            })
            .await;
            Rig {
                app,
                proxy,
                phpipam: Some(fake),
                infoblox: None,
            }
        }
        BackendKind::Infoblox => {
            let mut state = FakeWapiState::empty();
            seed_infoblox(&mut state);
            let fake = FakeWapi::start_with(state).await;
            let proxy = FaultProxy::start(&fake.url).await;
            let config = infoblox_config(&proxy.url).replace("timeout_secs = 10", &secs);
            assert!(config.contains(&secs));
            let app = spawn_with(AppOptions {
                config,
                tls: false,
                metrics: false,
            })
            .await;
            Rig {
                app,
                proxy,
                phpipam: None,
                infoblox: Some(fake),
            }
        }
        BackendKind::Embedded => panic!("the resilience rig is for remote backends"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Failure {
    Unreachable,
    Slow,
    Status(u16),
    Garbage,
}

impl Failure {
    /// Words the error message must contain (any of them), naming the cause.
    fn cause(self) -> &'static [&'static str] {
        match self {
            Failure::Unreachable => &["cannot connect"],
            Failure::Slow => &["did not answer within 1s"],
            Failure::Status(503) => &["503"],
            Failure::Status(500) => &["answered 500"],
            Failure::Status(_) => &["answered 50"],
            Failure::Garbage => &["not JSON", "not its JSON"],
        }
    }

    async fn apply(self, rig: &mut Rig) {
        match self {
            Failure::Unreachable => rig.proxy.stop().await,
            Failure::Slow => rig.proxy.set(Fault::Slow(SLOW)),
            Failure::Status(s) => rig.proxy.set(Fault::Status(s)),
            Failure::Garbage => rig.proxy.set(Fault::Garbage),
        }
    }

    async fn heal(self, rig: &mut Rig) {
        rig.proxy.set(Fault::Pass);
        if let Failure::Unreachable = self {
            rig.proxy.resume().await;
        }
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// The alive-task count once it has stopped moving (the slow fault's delayed proxy tasks have
/// run out, closed connections have been reaped).
async fn settled_tasks() -> usize {
    tokio::time::sleep(SLOW + Duration::from_millis(300)).await;
    let mut last = alive_tasks();
    let mut stable = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = alive_tasks();
        if now == last {
            stable += 1;
            if stable >= 5 {
                break;
            }
        } else {
            stable = 0;
            last = now;
        }
    }
    last
}

/// Asserts a failing call: a 5xx, within [`ERROR_BOUND`], its message naming backend `ipam`
/// and the cause.
fn assert_failed(what: &str, f: Failure, status: StatusCode, message: &str, took: Duration) {
    assert!(
        status.is_server_error(),
        "{what} under {f:?}: expected a 5xx, got {status}: {message}"
    );
    eprintln!("{what} under {f:?}: error after {took:?}");
    assert!(
        took <= ERROR_BOUND,
        "{what} under {f:?}: took {took:?}, bound {ERROR_BOUND:?}"
    );
    assert!(
        message.contains("backend ipam"),
        "{what} under {f:?}: message does not name the backend: {message}"
    );
    assert!(
        f.cause().iter().any(|c| message.contains(c)),
        "{what} under {f:?}: message does not name the cause {:?}: {message}",
        f.cause()
    );
}

async fn timed<F: std::future::Future>(fut: F) -> (F::Output, Duration) {
    let t = Instant::now();
    let out = fut.await;
    (out, t.elapsed())
}

async fn readyz(app: &TestApp) -> (StatusCode, Value) {
    let resp = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `/readyz` reaches `want` within a few backend timeouts.
async fn await_ready(app: &TestApp, want: bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..20 {
        let (status, body) = readyz(app).await;
        if (status == StatusCode::OK) == want && body["ready"] == json!(want) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("/readyz did not turn {want}: {last:#}");
}

async fn vra_error(app: &TestApp, op: &str, body: &Value) -> (StatusCode, String, Duration) {
    let ((status, out), took) = timed(vra(app, op, body)).await;
    let msg = out["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        out["error"]["code"].is_string(),
        "{op}: not the vRA error envelope: {out:#}"
    );
    (status, msg, took)
}

async fn avi_error(app: &TestApp, function: &str, body: Value) -> (StatusCode, String, Duration) {
    let ((status, out), took) = timed(crate::avi_common::call(app, function, body)).await;
    let class = crate::avi_common::exception(&out).to_owned();
    assert!(
        ipam_gateway::contracts::avi::errors::EXCEPTION_CLASSES.contains(&class.as_str()),
        "{function}: not one of Avi's exception classes: {out:#}"
    );
    (status, crate::avi_common::message(&out).to_owned(), took)
}

async fn native_allocate(app: &TestApp, net: &str, owner: &str) -> (StatusCode, Value) {
    let resp = app
        .post(
            "/api/v1/allocations",
            &json!({"owner": owner, "networks": [net]}),
        )
        .send()
        .await
        .expect("gateway answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn failure_scenario(kind: BackendKind, f: Failure) {
    let mut rig = rig(kind).await;
    let app = &rig.app;
    let ready = await_ready(app, true).await;
    assert_eq!(ready["backends"]["ipam"]["ready"], true, "{ready:#}");

    // Cold: nothing cached, the listings themselves fail.
    f.apply(&mut rig).await;
    let app = &rig.app;
    let ranges = filled("get-ip-ranges", &Default::default(), &[("host", "gw")]);
    let (status, msg, took) = vra_error(app, "get-ip-ranges", &ranges).await;
    assert_failed("vRA get-ip-ranges", f, status, &msg, took);
    let (status, msg, took) = avi_error(
        app,
        "get-available-networks-and-subnets",
        json!({"ip_type": "V4_ONLY"}),
    )
    .await;
    assert_failed(
        "Avi get-available-networks-and-subnets",
        f,
        status,
        &msg,
        took,
    );
    let ((status, body), took) = timed(readyz(app)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:#}");
    assert_eq!(body["ready"], false, "{body:#}");
    let why = body["backends"]["ipam"]["error"]
        .as_str()
        .unwrap_or_default();
    assert_failed("/readyz", f, StatusCode::BAD_GATEWAY, why, took);

    // Back up: ready again, and the listing (now cached) gives the ids to allocate in.
    f.heal(&mut rig).await;
    let app = &rig.app;
    await_ready(app, true).await;
    let values = placeholders(app).await;
    let net = values["range:lab-servers"].clone();
    let (status, body) = native_allocate(app, &net, "warm-up").await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    let avi_net = crate::avi_common::net_id(app, "10.20.0.0/24").await;
    let baseline = settled_tasks().await;

    // Warm listings, failing allocations: every contract gets its error.
    f.apply(&mut rig).await;
    let app = &rig.app;
    let alloc = filled("allocate-ip", &values, &[]);
    let (status, msg, took) = vra_error(app, "allocate-ip", &alloc).await;
    assert_failed("vRA allocate-ip", f, status, &msg, took);
    let (status, msg, took) = avi_error(
        app,
        "create-ipam-record",
        json!({"record_info": {"id": "vs-resilience", "allocation_type": "V4_ONLY",
            "nw_and_subnet_list": [[avi_net, "10.20.0.0/24", null]]}}),
    )
    .await;
    assert_failed("Avi create-ipam-record", f, status, &msg, took);
    let ((status, body), took) = timed(native_allocate(app, &net, "vm-down")).await;
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert_failed("native allocate", f, status, msg, took);

    // Bursts of failing requests: the task count does not grow with them.
    let mut counts = Vec::new();
    for round in 0..3 {
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..BURST {
            let req = app.post(
                "/api/v1/allocations",
                &json!({"owner": format!("burst-{round}-{i}"), "networks": [net]}),
            );
            calls.spawn(async move {
                let resp = req.send().await.expect("gateway answers");
                (resp.status(), resp.text().await.unwrap_or_default())
            });
        }
        while let Some(done) = calls.join_next().await {
            let (status, body) = done.expect("burst task");
            assert!(status.is_server_error(), "{status}: {body}");
        }
        counts.push(settled_tasks().await);
    }
    let slack = 4;
    assert!(
        counts[2] <= counts[0] + slack,
        "{kind} {f:?}: alive tasks grew with failed requests: baseline {baseline}, after each \
         burst of {BURST}: {counts:?}"
    );
    assert!(
        counts[0] <= baseline + 6 * BURST,
        "{kind} {f:?}: more tasks than connections can explain: baseline {baseline}, {counts:?}"
    );
    eprintln!("{kind} {f:?}: alive tasks baseline {baseline}, after bursts {counts:?}");

    // Recovery: ready, and the same allocation now succeeds.
    f.heal(&mut rig).await;
    let app = &rig.app;
    await_ready(app, true).await;
    let (status, out) = vra(app, "allocate-ip", &alloc).await;
    assert_eq!(status, StatusCode::OK, "{out:#}");
    let (status, body) = native_allocate(app, &net, "vm-down").await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    rig.app.stop().await;
}

macro_rules! failure_tests {
    ($($name:ident: $kind:expr, $f:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            failure_scenario($kind, $f).await;
        }
    )*};
}

failure_tests! {
    phpipam_unreachable: BackendKind::Phpipam, Failure::Unreachable;
    phpipam_slow: BackendKind::Phpipam, Failure::Slow;
    phpipam_503: BackendKind::Phpipam, Failure::Status(503);
    phpipam_500: BackendKind::Phpipam, Failure::Status(500);
    phpipam_garbage_json: BackendKind::Phpipam, Failure::Garbage;
    infoblox_unreachable: BackendKind::Infoblox, Failure::Unreachable;
    infoblox_slow: BackendKind::Infoblox, Failure::Slow;
    infoblox_503: BackendKind::Infoblox, Failure::Status(503);
    infoblox_500: BackendKind::Infoblox, Failure::Status(500);
    infoblox_garbage_json: BackendKind::Infoblox, Failure::Garbage;
}
