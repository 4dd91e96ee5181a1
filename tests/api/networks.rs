use serde_json::{Value, json};

use crate::support::spawn_app;

async fn names(app: &crate::support::TestApp, query: &str) -> Vec<String> {
    let r = app
        .get(&format!("/api/v1/networks{query}"))
        .send()
        .await
        .expect("list");
    assert_eq!(r.status(), 200, "{query}");
    let body: Value = r.json().await.expect("json");
    body["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .map(|n| n["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn lists_the_seeded_networks_with_their_details() {
    let app = spawn_app().await;
    let body: Value = app
        .get("/api/v1/networks")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let nets = body["networks"].as_array().expect("networks");
    assert_eq!(nets.len(), 4);
    let lab = nets
        .iter()
        .find(|n| n["name"] == "lab-servers")
        .expect("lab-servers");
    assert_eq!(lab["cidr"], "10.20.0.0/24");
    assert_eq!(lab["gateway"], "10.20.0.1");
    assert_eq!(lab["dns_servers"], json!(["10.20.0.53", "10.20.0.54"]));
    assert_eq!(lab["dns_domain"], "lab.example.com");
    assert_eq!(lab["vlan"], 20);
    assert_eq!(lab["free"], 253, "254 hosts minus the gateway");
    assert!(
        lab["tags"]
            .as_array()
            .expect("tags")
            .contains(&json!({"key": "env", "value": "lab"}))
    );
    app.stop().await;
}

#[tokio::test]
async fn filters_by_family_address_space_and_tags() {
    let app = spawn_app().await;
    assert_eq!(names(&app, "?family=ipv6").await, ["lab-servers-v6"]);
    assert_eq!(names(&app, "?family=4").await.len(), 3);
    assert_eq!(names(&app, "?address_space=prod").await, ["prod-servers"]);
    let mut lab_servers = names(&app, "?tag=env%3Dlab&tag=tier%3Dservers").await;
    lab_servers.sort();
    assert_eq!(lab_servers, ["lab-servers", "lab-servers-v6"]);
    assert!(names(&app, "?tag=env%3Dnowhere").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn bad_filters_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    for (query, field) in [
        ("?family=ipx", "family"),
        ("?tag=novalue", "tag"),
        ("?colour=red", "colour"),
    ] {
        let r = app
            .get(&format!("/api/v1/networks{query}"))
            .send()
            .await
            .expect("list");
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["field"], field, "{query}");
    }
    app.stop().await;
}

#[tokio::test]
async fn network_ids_are_stable_across_restarts_and_resolve_one_by_one() {
    let app = spawn_app().await;
    let id = app.network_id("lab-dmz").await;
    let r: Value = app
        .get(&format!("/api/v1/networks/{id}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(r["cidr"], "10.30.0.0/26");
    app.stop().await;
    let again = spawn_app().await;
    assert_eq!(
        again.network_id("lab-dmz").await,
        id,
        "same config → same id"
    );
    let r = again
        .get("/api/v1/networks/local.bm9wZQ")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    let r = again
        .get("/api/v1/networks/garbage")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    again.stop().await;
}

#[tokio::test]
async fn on_demand_networks_are_carved_from_blocks_idempotently_and_released() {
    let app = spawn_app().await;
    let blocks: Value = app
        .get("/api/v1/blocks")
        .send()
        .await
        .expect("blocks")
        .json()
        .await
        .expect("json");
    let block = blocks["blocks"][0]["id"]
        .as_str()
        .expect("block id")
        .to_owned();
    assert_eq!(blocks["blocks"][0]["cidr"], "10.100.0.0/16");

    let req = json!({"block": block, "prefix_len": 28, "owner": "vra:deployment-1"});
    let first = app
        .post("/api/v1/networks", &req)
        .send()
        .await
        .expect("carve");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["cidr"], "10.100.0.0/28");
    assert_eq!(
        first["block"],
        block.as_str(),
        "the block's API id, as listed"
    );
    assert_eq!(first["gateway"], "10.100.0.1");
    assert_eq!(
        first["dns_domain"], "lab.example.com",
        "inherited from the block"
    );

    let retry: Value = app
        .post("/api/v1/networks", &req)
        .send()
        .await
        .expect("carve again")
        .json()
        .await
        .expect("json");
    assert_eq!(
        retry["id"], first["id"],
        "same owner and block → same network"
    );

    // The same owner asking for something else is a conflict, not silently the old network.
    for different in [
        json!({"block": block, "prefix_len": 27, "owner": "vra:deployment-1"}),
        json!({"block": block, "prefix_len": 28, "owner": "vra:deployment-1", "subnet": "10.100.9.0/28"}),
    ] {
        let r = app
            .post("/api/v1/networks", &different)
            .send()
            .await
            .expect("carve");
        assert_eq!(r.status(), 409, "{different}");
        let err: Value = r.json().await.expect("json");
        let message = err["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("already holds network") && message.contains("10.100.0.0/28"),
            "{message}"
        );
    }
    let same_subnet = json!({"block": block, "prefix_len": 28, "owner": "vra:deployment-1", "subnet": "10.100.0.0/28"});
    let r: Value = app
        .post("/api/v1/networks", &same_subnet)
        .send()
        .await
        .expect("carve")
        .json()
        .await
        .expect("json");
    assert_eq!(
        r["id"], first["id"],
        "the held subnet, asked by name, is the same network"
    );

    let other: Value = app
        .post(
            "/api/v1/networks",
            &json!({"block": block, "prefix_len": 28, "owner": "vra:deployment-2"}),
        )
        .send()
        .await
        .expect("carve")
        .json()
        .await
        .expect("json");
    assert_eq!(other["cidr"], "10.100.0.16/28");

    // It is a network like the others: allocate in it, and it shows in the listing.
    let net = first["id"].as_str().expect("id");
    let a = app
        .post(
            "/api/v1/allocations",
            &json!({"owner": "vm-x", "networks": [net]}),
        )
        .send()
        .await
        .expect("alloc");
    assert_eq!(a.status(), 201);
    let a: Value = a.json().await.expect("json");
    assert_eq!(a["address"], "10.100.0.2");
    assert!(names(&app, "").await.len() == 6);

    // Held addresses block deletion; released, the network goes (twice is fine).
    let r = app
        .delete(&format!("/api/v1/networks/{net}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 409);
    let r = app
        .delete(&format!(
            "/api/v1/allocations/{}",
            a["id"].as_str().expect("id")
        ))
        .send()
        .await
        .expect("release");
    assert_eq!(r.status(), 204);
    for _ in 0..2 {
        let r = app
            .delete(&format!("/api/v1/networks/{net}"))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status(), 204);
    }
    assert_eq!(names(&app, "").await.len(), 5);

    // Bad requests name the field.
    for (body, field) in [
        (
            json!({"block": block, "prefix_len": 8, "owner": "o"}),
            "prefix_len",
        ),
        (
            json!({"block": "nope", "prefix_len": 24, "owner": "o"}),
            "block",
        ),
        (
            json!({"block": block, "prefix_len": "x", "owner": "o"}),
            "prefix_len",
        ),
        (json!({"block": block, "prefix_len": 24}), "owner"),
        (
            json!({"block": block, "prefix_len": 28, "owner": "o", "subnet": "10.100.5.3/28"}),
            "subnet",
        ),
    ] {
        let r = app
            .post("/api/v1/networks", &body)
            .send()
            .await
            .expect("carve");
        assert_eq!(r.status(), 400, "{body}");
        let err: Value = r.json().await.expect("json");
        assert_eq!(err["error"]["field"], field, "{body}");
    }
    app.stop().await;
}
