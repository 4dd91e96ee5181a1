//! Token (phpIPAM) or session cookie (Infoblox) expiry in the middle of a burst: the concurrent
//! requests that find their credential refused share exactly one new login, and none fails.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::matrix::{BackendKind, LabApp, spawn_lab};

const BURST: usize = 50;

fn logins(lab: &LabApp) -> usize {
    match lab.kind {
        BackendKind::Phpipam => lab.phpipam().expect("fake phpIPAM").logins(),
        BackendKind::Infoblox => lab.infoblox().expect("fake WAPI").logins(),
        BackendKind::Embedded => 0,
    }
}

fn expire(lab: &LabApp) {
    match lab.kind {
        BackendKind::Phpipam => lab.phpipam().expect("fake phpIPAM").expire_tokens(),
        BackendKind::Infoblox => lab.infoblox().expect("fake WAPI").expire_sessions(),
        BackendKind::Embedded => {}
    }
}

async fn burst_after_expiry(kind: BackendKind) {
    let lab = spawn_lab(kind, false).await;
    let net = lab.network_id("lab-servers").await;
    // Warm: one allocation logs in; its token/cookie is cached.
    let r = lab
        .post(
            "/api/v1/allocations",
            &json!({"owner": "warm-up", "networks": [net]}),
        )
        .send()
        .await
        .expect("warm-up");
    assert_eq!(r.status(), StatusCode::CREATED);
    let before = logins(&lab);
    assert_eq!(before, 1, "one login so far");

    // Half the burst is on its way when the credential expires; the other half follows.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..BURST {
        if i == BURST / 2 {
            expire(&lab);
        }
        let alloc = lab.post(
            "/api/v1/allocations",
            &json!({"owner": format!("burst-{i}"), "networks": [net]}),
        );
        let list = lab.get("/api/v1/networks");
        calls.spawn(async move {
            let a = alloc.send().await.expect("allocate answers");
            let a = (a.status(), a.text().await.unwrap_or_default());
            let l = list.send().await.expect("list answers");
            let l = (l.status(), l.text().await.unwrap_or_default());
            (a, l)
        });
    }
    let mut addresses = Vec::new();
    while let Some(done) = calls.join_next().await {
        let ((a_status, a_body), (l_status, l_body)) = done.expect("task");
        assert_eq!(a_status, StatusCode::CREATED, "{kind}: {a_body}");
        assert_eq!(l_status, StatusCode::OK, "{kind}: {l_body}");
        let v: Value = serde_json::from_str(&a_body).expect("json");
        addresses.push(v["address"].as_str().expect("address").to_owned());
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), BURST, "{kind}: distinct addresses");
    assert_eq!(
        logins(&lab),
        before + 1,
        "{kind}: exactly one re-login for a burst of {BURST}"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phpipam_token_expiry_mid_burst_costs_one_login() {
    burst_after_expiry(BackendKind::Phpipam).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infoblox_cookie_expiry_mid_burst_costs_one_login() {
    burst_after_expiry(BackendKind::Infoblox).await;
}
