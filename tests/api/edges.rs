//! Edge behaviour behind a programmable fake backend: readiness, timeouts, error mapping, cache
//! coalescing, passthrough authentication.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ipam_gateway::domain::IpamError;
use serde_json::{Value, json};

use crate::support::fake::{Mode, spawn_fake};

#[tokio::test]
async fn readyz_turns_false_naming_the_backend_and_back_true() {
    let app = spawn_fake(Duration::from_secs(5), Duration::from_millis(300)).await;
    let r = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200);

    app.backend.set(Mode::Fail(IpamError::Unavailable {
        backend: "fake".into(),
        detail: "connection refused".into(),
    }));
    let r = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["ready"], false);
    let err = body["backends"]["fake"]["error"].as_str().expect("error");
    assert!(
        err.contains("fake") && err.contains("connection refused"),
        "{err}"
    );

    app.backend.set(Mode::Slow(Duration::from_secs(2)));
    let r = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        r.status(),
        503,
        "a backend slower than the readiness timeout is not ready"
    );

    app.backend.set(Mode::Ok);
    let r = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200, "recovers");
}

#[tokio::test]
async fn requests_slower_than_the_request_timeout_get_504() {
    let app = spawn_fake(Duration::from_millis(300), Duration::from_secs(1)).await;
    // Warm the auth cache so only the backend is slow.
    assert_eq!(
        app.get("/api/v1/networks")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    app.backend.set(Mode::Slow(Duration::from_secs(3)));
    let body = json!({"owner": "o", "networks": [ipam_gateway::domain::NetworkId::new("fake", "fake-net-1")]});
    let r = app
        .client
        .post(app.url("/api/v1/allocations"))
        .basic_auth("demo", Some(crate::support::DEMO_PASSWORD))
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 504);
}

#[tokio::test]
async fn backend_errors_map_to_distinct_statuses_and_name_the_backend() {
    let app = spawn_fake(Duration::from_secs(5), Duration::from_secs(1)).await;
    let cases = [
        (
            IpamError::Unavailable {
                backend: "fake".into(),
                detail: "connection refused".into(),
            },
            503,
        ),
        (
            IpamError::Upstream {
                backend: "fake".into(),
                status: 500,
                detail: "database is locked".into(),
            },
            502,
        ),
        (
            IpamError::Timeout {
                backend: "fake".into(),
                seconds: 10,
            },
            504,
        ),
        (
            IpamError::Unauthorized("the gateway's API token was refused".into()),
            502,
        ),
    ];
    for (err, status) in cases {
        app.backend.set(Mode::Fail(err.clone()));
        app.ipam.network_snapshot(&caller()).await.ok(); // errors are not cached: nothing to clear
        let r = app.get("/api/v1/networks").send().await.expect("get");
        assert_eq!(r.status().as_u16(), status, "{err:?}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], err.code());
        assert_eq!(body["error"]["message"], err.to_string());
    }
    app.backend.set(Mode::Ok);
    let r = app.get("/api/v1/blocks").send().await.expect("get");
    assert_eq!(r.status(), 501, "a missing capability says so");
}

fn caller() -> ipam_gateway::service::Caller {
    ipam_gateway::service::Caller {
        name: "t".into(),
        backend: "fake".into(),
        cx: Default::default(),
    }
}

#[tokio::test]
async fn concurrent_listing_misses_cost_one_backend_call_and_errors_are_not_cached() {
    let app = spawn_fake(Duration::from_secs(5), Duration::from_secs(1)).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let ipam = app.ipam.clone();
        tasks.push(tokio::spawn(async move {
            ipam.network_snapshot(&caller()).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("listing").len(), 1);
    }
    assert_eq!(
        app.backend.networks_seen(),
        1,
        "20 concurrent misses, one backend call"
    );

    // After an allocation the listing is reloaded once.
    let req = ipam_gateway::service::AllocationRequest {
        owner: ipam_gateway::domain::Owner::parse("o").expect("owner"),
        networks: vec![ipam_gateway::domain::NetworkId::new("fake", "fake-net-1")],
        address: None,
        details: Default::default(),
        aliases: Vec::new(),
    };
    app.ipam.allocate(&caller(), &req).await.expect("allocate");
    app.ipam.network_snapshot(&caller()).await.expect("listing");
    app.ipam.network_snapshot(&caller()).await.expect("listing");
    assert_eq!(
        app.backend.networks_seen(),
        2,
        "invalidated by the allocation, reloaded once"
    );

    // A failure is not cached: the next call asks the backend again.
    app.ipam
        .allocate(
            &caller(),
            &ipam_gateway::service::AllocationRequest {
                owner: ipam_gateway::domain::Owner::parse("o2").expect("owner"),
                ..req
            },
        )
        .await
        .expect("allocate");
    app.backend.set(Mode::Fail(IpamError::Unavailable {
        backend: "fake".into(),
        detail: "down".into(),
    }));
    assert!(app.ipam.network_snapshot(&caller()).await.is_err());
    app.backend.set(Mode::Ok);
    assert!(app.ipam.network_snapshot(&caller()).await.is_ok());
    assert_eq!(app.backend.networks_seen(), 4);
}

#[tokio::test]
async fn passthrough_hands_unknown_users_to_the_backend() {
    let app = spawn_fake(Duration::from_secs(5), Duration::from_secs(1)).await;
    let as_user = |u: &str, p: &str| {
        app.client
            .get(app.url("/api/v1/networks"))
            .basic_auth(u, Some(p))
    };
    assert_eq!(
        as_user("alice", "wonderland")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    let checks = app.backend.check_calls.load(Ordering::SeqCst);
    assert_eq!(
        as_user("alice", "wonderland")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        app.backend.check_calls.load(Ordering::SeqCst),
        checks,
        "verified credentials are remembered (by hash)"
    );
    assert_eq!(
        as_user("alice", "looking-glass")
            .send()
            .await
            .expect("get")
            .status(),
        401
    );
    // Configured clients still authenticate locally.
    assert_eq!(
        app.get("/api/v1/networks")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    // The backend down while verifying a new user: 503, not a false "wrong password".
    app.backend.set(Mode::Fail(IpamError::Unavailable {
        backend: "fake".into(),
        detail: "down".into(),
    }));
    assert_eq!(
        as_user("bob", "builder")
            .send()
            .await
            .expect("get")
            .status(),
        503
    );
}

#[tokio::test]
async fn a_batch_runs_to_the_end_when_the_caller_hangs_up() {
    let app = spawn_fake(Duration::from_secs(30), Duration::from_secs(1)).await;
    assert_eq!(
        app.get("/api/v1/networks")
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    app.backend.set(Mode::Slow(Duration::from_millis(150)));
    let net = ipam_gateway::domain::NetworkId::new("fake", "fake-net-1");
    let body = json!({"allocations": [
        {"owner": "hang-0", "networks": [net]},
        {"owner": "hang-1", "networks": [net]},
        {"owner": "hang-2", "networks": [net]},
    ]});
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let r = impatient
        .post(app.url("/api/v1/allocations/batch"))
        .basic_auth("demo", Some(crate::support::DEMO_PASSWORD))
        .json(&body)
        .send()
        .await;
    assert!(r.is_err(), "the caller gave up before the batch finished");
    // Each allocation costs two slow backend calls (owner lookup, allocate): ~0.9 s in all.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held: Vec<String> = app
        .backend
        .allocated
        .lock()
        .expect("allocated")
        .iter()
        .filter_map(|a| a.owner.as_ref().map(|o| o.to_string()))
        .collect();
    assert_eq!(
        held,
        ["hang-0", "hang-1", "hang-2"],
        "the whole batch, not a half"
    );
}

/// A backend whose "next free" looks up, then inserts, like phpIPAM's `first_free`, and does not
/// declare itself atomic: the service must serialise this process's allocations per network.
#[derive(Debug, Default)]
struct CheckThenInsert {
    taken: std::sync::Mutex<Vec<std::net::IpAddr>>,
}

#[async_trait::async_trait]
impl ipam_gateway::backends::Backend for CheckThenInsert {
    fn name(&self) -> &str {
        "racy"
    }
    fn kind(&self) -> &'static str {
        "racy"
    }
    async fn check(
        &self,
        _cx: &ipam_gateway::backends::CallContext,
    ) -> ipam_gateway::domain::IpamResult<ipam_gateway::domain::BackendStatus> {
        Err(IpamError::Unsupported("check".into()))
    }
    async fn networks(
        &self,
        _cx: &ipam_gateway::backends::CallContext,
    ) -> ipam_gateway::domain::IpamResult<Vec<ipam_gateway::domain::NetworkInfo>> {
        Ok(vec![])
    }
    async fn blocks(
        &self,
        _cx: &ipam_gateway::backends::CallContext,
    ) -> ipam_gateway::domain::IpamResult<Vec<ipam_gateway::domain::BlockInfo>> {
        Ok(vec![])
    }
    async fn allocate(
        &self,
        _cx: &ipam_gateway::backends::CallContext,
        req: &ipam_gateway::domain::AllocateIn,
    ) -> ipam_gateway::domain::IpamResult<ipam_gateway::domain::AllocationInfo> {
        let next = self.taken.lock().expect("taken").len() + 1;
        // The gap between phpIPAM's lookup and its insert.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let address: std::net::IpAddr = format!("198.51.100.{next}").parse().expect("ip");
        self.taken.lock().expect("taken").push(address);
        Ok(ipam_gateway::domain::AllocationInfo {
            network: req.network.clone(),
            address,
            owner: Some(req.owner.clone()),
            details: req.details.clone(),
            reference: None,
        })
    }
    async fn find(
        &self,
        _cx: &ipam_gateway::backends::CallContext,
        _lookup: &ipam_gateway::domain::Lookup,
    ) -> ipam_gateway::domain::IpamResult<Vec<ipam_gateway::domain::AllocationInfo>> {
        Ok(vec![])
    }
    async fn release(
        &self,
        _cx: &ipam_gateway::backends::CallContext,
        _network: &str,
        _address: std::net::IpAddr,
    ) -> ipam_gateway::domain::IpamResult<()> {
        Ok(())
    }
}

#[tokio::test]
async fn allocations_are_serialised_per_network_when_the_backend_is_not_atomic() {
    let backend = std::sync::Arc::new(CheckThenInsert::default());
    let ipam = std::sync::Arc::new(ipam_gateway::service::Ipam::new(
        vec![backend.clone() as std::sync::Arc<dyn ipam_gateway::backends::Backend>],
        Duration::from_secs(60),
    ));
    let caller = ipam_gateway::service::Caller {
        name: "t".into(),
        backend: "racy".into(),
        cx: Default::default(),
    };
    let net = ipam_gateway::domain::NetworkId::new("racy", "n1");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (ipam, caller, net) = (ipam.clone(), caller.clone(), net.clone());
        tasks.push(tokio::spawn(async move {
            let req = ipam_gateway::service::AllocationRequest {
                owner: ipam_gateway::domain::Owner::parse(&format!("o{i}")).expect("owner"),
                networks: vec![net],
                address: None,
                details: Default::default(),
                aliases: Vec::new(),
            };
            ipam.allocate(&caller, &req)
                .await
                .expect("allocate")
                .address
        }));
    }
    let mut seen = std::collections::HashSet::new();
    for t in tasks {
        assert!(seen.insert(t.await.expect("task")), "duplicate address");
    }
    assert_eq!(backend.taken.lock().expect("taken").len(), 20);
}
