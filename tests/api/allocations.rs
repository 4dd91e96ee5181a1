use std::collections::HashSet;

use serde_json::{Value, json};

use crate::support::{AppOptions, allocate, spawn_app, spawn_with};

#[tokio::test]
async fn allocates_the_next_free_address_and_returns_it_again_for_the_same_owner() {
    let app = spawn_app().await;
    let net = app.network_id("lab-servers").await;
    let (status, a) = allocate(
        &app,
        json!({"owner": "vm-1", "hostname": "vm-1.lab", "networks": [net]}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        a["address"], "10.20.0.2",
        "the gateway .1 is never handed out"
    );
    assert_eq!(a["hostname"], "vm-1.lab");
    let (_, again) = allocate(&app, json!({"owner": "vm-1", "networks": [net]})).await;
    assert_eq!(
        again["address"], "10.20.0.2",
        "a retry gets the same address"
    );
    let (_, b) = allocate(&app, json!({"owner": "vm-2", "networks": [net]})).await;
    assert_eq!(b["address"], "10.20.0.3");
    app.stop().await;
}

#[tokio::test]
async fn candidates_are_tried_in_order_and_exhaustion_is_a_clear_409() {
    let config = crate::support::BASE_CONFIG.to_owned()
        + "\n[[backends.local.networks]]\nname = \"tiny\"\ncidr = \"192.0.2.0/30\"\n";
    let app = spawn_with(AppOptions {
        config,
        ..Default::default()
    })
    .await;
    let tiny = app.network_id("tiny").await;
    let dmz = app.network_id("lab-dmz").await;
    let mut got = Vec::new();
    for i in 0..3 {
        let (status, a) = allocate(
            &app,
            json!({"owner": format!("o{i}"), "networks": [tiny, dmz]}),
        )
        .await;
        assert_eq!(status, 201);
        got.push(a["address"].as_str().expect("addr").to_owned());
    }
    assert_eq!(
        got,
        ["192.0.2.1", "192.0.2.2", "10.30.0.2"],
        "tiny first, then the next candidate"
    );
    let (status, err) = allocate(&app, json!({"owner": "o9", "networks": [tiny]})).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "exhausted");
    let msg = err["error"]["message"].as_str().expect("message");
    assert!(
        msg.contains("no free address") && msg.contains("192.0.2.0/30"),
        "{msg}"
    );
    app.stop().await;
}

#[tokio::test]
async fn specific_addresses_are_honoured_and_conflicts_explained() {
    let app = spawn_app().await;
    let net = app.network_id("lab-servers").await;
    let (status, a) = allocate(
        &app,
        json!({"owner": "s1", "networks": [net], "address": "10.20.0.77"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(a["address"], "10.20.0.77");
    let (status, err) = allocate(
        &app,
        json!({"owner": "s2", "networks": [net], "address": "10.20.0.77"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "conflict");
    let (status, err) = allocate(
        &app,
        json!({"owner": "s3", "networks": [net], "address": "10.99.0.1"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["field"], "address");
    let (status, err) = allocate(
        &app,
        json!({"owner": "s1", "networks": [net], "address": "10.20.0.78"}),
    )
    .await;
    assert_eq!(status, 409, "s1 already holds .77 here: {err}");
    app.stop().await;
}

#[tokio::test]
async fn ipv6_allocation_works_the_same_way() {
    let app = spawn_app().await;
    let net = app.network_id("lab-servers-v6").await;
    let (status, a) = allocate(&app, json!({"owner": "v6-vm", "networks": [net]})).await;
    assert_eq!(status, 201);
    assert_eq!(a["address"], "2001:db8:20::2");
    let (status, b) = allocate(
        &app,
        json!({"owner": "v6-b", "networks": [net], "address": "2001:db8:20::beef"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(b["address"], "2001:db8:20::beef");
    app.stop().await;
}

#[tokio::test]
async fn find_update_and_release_by_id_and_owner() {
    let app = spawn_app().await;
    let net = app.network_id("lab-servers").await;
    let (_, a) = allocate(&app, json!({"owner": "vm-42", "networks": [net]})).await;
    let id = a["id"].as_str().expect("id").to_owned();

    let found: Value = app
        .get("/api/v1/allocations?owner=vm-42")
        .send()
        .await
        .expect("find")
        .json()
        .await
        .expect("json");
    assert_eq!(found["allocations"][0]["id"], id.as_str());
    let by_addr: Value = app
        .get("/api/v1/allocations?address=10.20.0.2")
        .send()
        .await
        .expect("find")
        .json()
        .await
        .expect("json");
    assert_eq!(by_addr["allocations"][0]["owner"], "vm-42");

    let r = app
        .patch(
            &format!("/api/v1/allocations/{id}"),
            &json!({"mac": "00-50-56-AB-CD-EF", "hostname": "web-42"}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let got: Value = app
        .get(&format!("/api/v1/allocations/{id}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["mac"], "00:50:56:ab:cd:ef");
    assert_eq!(got["hostname"], "web-42");

    let r = app
        .patch(
            &format!("/api/v1/allocations/{id}"),
            &json!({"mac": "not-a-mac"}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.expect("json");
    assert_eq!(err["error"]["field"], "mac");

    for _ in 0..2 {
        let r = app
            .delete(&format!("/api/v1/allocations/{id}"))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 204, "releasing twice succeeds");
    }
    let r = app
        .get(&format!("/api/v1/allocations/{id}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let r = app
        .patch(
            &format!("/api/v1/allocations/{id}"),
            &json!({"hostname": "x"}),
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 404);

    // Release everything an owner holds.
    allocate(&app, json!({"owner": "multi", "networks": [net]})).await;
    let v6 = app.network_id("lab-servers-v6").await;
    allocate(&app, json!({"owner": "multi", "networks": [v6]})).await;
    let released: Value = app
        .delete("/api/v1/allocations?owner=multi")
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(released["released"].as_array().expect("list").len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn batches_are_all_or_nothing() {
    let config = crate::support::BASE_CONFIG.to_owned()
        + "\n[[backends.local.networks]]\nname = \"tiny\"\ncidr = \"192.0.2.0/30\"\n";
    let app = spawn_with(AppOptions {
        config,
        ..Default::default()
    })
    .await;
    let tiny = app.network_id("tiny").await;
    let lab = app.network_id("lab-servers").await;
    let body = json!({"allocations": [
        {"owner": "b/0", "networks": [lab]},
        {"owner": "b/1", "networks": [tiny]},
        {"owner": "b/2", "networks": [tiny]},
        {"owner": "b/3", "networks": [tiny]},
    ]});
    let r = app
        .post("/api/v1/allocations/batch", &body)
        .send()
        .await
        .expect("batch");
    assert_eq!(r.status(), 409);
    let err: Value = r.json().await.expect("json");
    assert_eq!(err["error"]["index"], 3);
    assert_eq!(
        err["error"]["code"], "exhausted",
        "the original error, not a rollback error"
    );
    assert_eq!(err["error"]["rollback_failures"], json!([]));
    for owner in ["b/0", "b/1", "b/2"] {
        let found: Value = app
            .get(&format!("/api/v1/allocations?owner={owner}"))
            .send()
            .await
            .expect("find")
            .json()
            .await
            .expect("json");
        assert_eq!(found["allocations"], json!([]), "{owner} was rolled back");
    }
    // The same batch without the overflow succeeds.
    let body = json!({"allocations": [
        {"owner": "b/0", "networks": [lab]},
        {"owner": "b/1", "networks": [tiny]},
    ]});
    let r = app
        .post("/api/v1/allocations/batch", &body)
        .send()
        .await
        .expect("batch");
    assert_eq!(r.status(), 201);
    app.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400_naming_the_field() {
    let app = spawn_app().await;
    let net = app.network_id("lab-servers").await;
    let cases = [
        (json!({"networks": [net]}), "owner"),
        (json!({"owner": "o"}), "networks"),
        (json!({"owner": "o", "networks": []}), "networks"),
        (json!({"owner": "o", "networks": [42]}), "networks[0]"),
        (
            json!({"owner": "o", "networks": [net, "bogus"]}),
            "networks[1]",
        ),
        (
            json!({"owner": "o", "networks": [net], "address": "10.20.0.300"}),
            "address",
        ),
        (json!({"owner": "o", "networks": [net], "mac": "zz"}), "mac"),
        (json!({"owner": "", "networks": [net]}), "owner"),
        (
            json!({"owner": "o", "networks": [net], "colour": "red"}),
            "colour",
        ),
        (json!([1, 2]), "body"),
    ];
    for (body, field) in cases {
        let (status, err) = allocate(&app, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }
    // Not JSON at all.
    let r = app
        .client
        .post(app.url("/api/v1/allocations"))
        .basic_auth("demo", Some(crate::support::DEMO_PASSWORD))
        .header("content-type", "application/json")
        .body("{\"owner\": ")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.expect("json");
    assert_eq!(err["error"]["field"], "body");
    // Batch items are named with their index.
    let r = app
        .post("/api/v1/allocations/batch", &json!({"allocations": [{"owner": "o", "networks": [net]}, {"owner": "o2", "networks": ["x"]}]}))
        .send()
        .await
        .expect("batch");
    let err: Value = r.json().await.expect("json");
    assert_eq!(err["error"]["field"], "allocations[1].networks[0]");
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = spawn_app().await;
    let big = "x".repeat(2 * 1024 * 1024);
    let r = app
        .post(
            "/api/v1/allocations",
            &json!({"owner": big, "networks": []}),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    app.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_allocations_on_a_slash_24_never_duplicate() {
    let app = spawn_app().await;
    let net = app.network_id("lab-servers").await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = app.client.clone();
        let url = app.url("/api/v1/allocations");
        let net = net.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .basic_auth("demo", Some(crate::support::DEMO_PASSWORD))
                .json(&json!({"owner": format!("c-{i}"), "networks": [net]}))
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }));
    }
    // A second wave of 200 more owners: the /24 (253 assignable) runs out part way.
    for i in 200..400 {
        let client = app.client.clone();
        let url = app.url("/api/v1/allocations");
        let net = net.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .basic_auth("demo", Some(crate::support::DEMO_PASSWORD))
                .json(&json!({"owner": format!("c-{i}"), "networks": [net]}))
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }));
    }
    let mut addresses = HashSet::new();
    let mut exhausted = 0;
    for t in tasks {
        let (status, body) = t.await.expect("task");
        match status {
            201 => {
                let addr = body["address"].as_str().expect("address").to_owned();
                assert!(addresses.insert(addr.clone()), "duplicate address {addr}");
            }
            409 => {
                assert_eq!(body["error"]["code"], "exhausted", "{body}");
                exhausted += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(addresses.len(), 253, "every assignable address, once");
    assert_eq!(exhausted, 400 - 253);
    assert!(!addresses.contains("10.20.0.1"), "not the gateway");
    let listed: Value = app
        .get(&format!("/api/v1/networks/{net}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["free"], 0,
        "the cache was invalidated by the allocations"
    );
    app.stop().await;
}

/// Issue 11: the gateway is never handed out, wherever it sits in the range (here in the middle,
/// where the range does not start after it); filling the network ends in a clean exhaustion.
/// The same guarantee on the other backends: `infoblox_routers::infoblox_never_hands_out_the_gateway`,
/// `phpipam_fake::phpipam_never_hands_out_the_gateway`.
#[tokio::test]
async fn embedded_never_hands_out_the_gateway() {
    let config = crate::support::BASE_CONFIG.to_owned()
        + "\n[[backends.local.networks]]\nname = \"mid-gw\"\ncidr = \"192.0.2.0/29\"\n\
           gateway = \"192.0.2.4\"\n";
    let app = spawn_with(AppOptions {
        config,
        ..Default::default()
    })
    .await;
    let net = app.network_id("mid-gw").await;
    let mut got = Vec::new();
    for i in 0..8 {
        let (status, a) = allocate(
            &app,
            json!({"owner": format!("fill-{i}"), "networks": [net]}),
        )
        .await;
        if status != 201 {
            assert_eq!(status, 409, "{a}");
            assert_eq!(a["error"]["code"], "exhausted", "{a}");
            break;
        }
        got.push(a["address"].as_str().expect("address").to_owned());
    }
    assert_eq!(
        got,
        [
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "192.0.2.5",
            "192.0.2.6"
        ],
        "every host but the gateway"
    );
    app.stop().await;
}

/// Issue 13 point 12: the answer to `POST /api/v1/allocations` is the record as the backend
/// holds it — the default description each backend writes included — so it equals what a
/// `GET` of the same allocation returns, on every backend.
#[tokio::test]
async fn the_allocation_answer_is_the_record_as_written_on_every_backend() {
    use crate::support::matrix::{BackendKind, spawn_lab};
    for &kind in BackendKind::ALL {
        let app = spawn_lab(kind, false).await;
        let net = app.network_id("lab-servers").await;
        let cases = [
            json!({"owner": "as-written-1", "networks": [net]}),
            json!({"owner": "as-written-2", "hostname": "aw-2.lab.example.com",
                   "mac": "00-50-56-AB-CD-02", "networks": [net]}),
            json!({"owner": "as-written-3", "description": "web front end",
                   "networks": [net], "address": "10.20.0.77"}),
        ];
        for body in cases {
            let (status, answer) = allocate(&app, body.clone()).await;
            assert_eq!(status, 201, "{kind}: {body} → {answer}");
            let id = answer["id"].as_str().expect("id");
            let r = app
                .get(&format!("/api/v1/allocations/{id}"))
                .send()
                .await
                .expect("get");
            assert_eq!(r.status(), 200, "{kind}");
            let read: Value = r.json().await.expect("json");
            assert_eq!(
                answer, read,
                "{kind}: the POST answer is what a GET reads back ({body})"
            );
            if let Some(d) = body.get("description") {
                assert_eq!(&answer["description"], d, "{kind}");
            }
        }
        app.stop().await;
    }
}
