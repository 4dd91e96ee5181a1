//! vRA Get IP Ranges and Get IP Blocks: fields, stable ids, paging over a stable snapshot, filters.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{AppOptions, BASE_CONFIG, TestApp, spawn_app};
use crate::vra_common::{error_of, filled, placeholders, vra, vra_ok};

fn by_name<'a>(ranges: &'a Value, name: &str) -> &'a Value {
    ranges
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no range {name} in {ranges:#}"))
}

/// Walks every page with `max` per page; returns the ranges in order and the number of pages.
async fn walk(app: &TestApp, max: Value) -> (Vec<Value>, usize) {
    let values = placeholders(app).await;
    let mut inputs = filled("get-ip-ranges", &values, &[]);
    inputs["pagingAndSorting"]["maxResults"] = max;
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let out = vra_ok(app, "get-ip-ranges", &inputs).await;
        pages += 1;
        all.extend(
            out["ipRanges"]
                .as_array()
                .expect("ipRanges")
                .iter()
                .cloned(),
        );
        match out.get("nextPageToken").and_then(Value::as_str) {
            Some(t) => inputs["pagingAndSorting"]["pageToken"] = json!(t),
            None => break,
        }
        assert!(pages < 50, "paging does not end");
    }
    (all, pages)
}

fn ids(ranges: &[Value]) -> Vec<String> {
    ranges
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn get_ip_ranges_returns_every_required_field_and_the_network_settings() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let out = vra_ok(
        &app,
        "get-ip-ranges",
        &filled("get-ip-ranges", &values, &[]),
    )
    .await;
    assert!(out.get("nextPageToken").is_none(), "one page: {out}");
    let ranges = &out["ipRanges"];
    assert_eq!(ranges.as_array().expect("list").len(), 4);
    for r in ranges.as_array().expect("list") {
        for key in [
            "id",
            "name",
            "startIPAddress",
            "endIPAddress",
            "ipVersion",
            "subnetPrefixLength",
        ] {
            assert!(
                r[key].is_string() && !r[key].as_str().expect("str").is_empty(),
                "{key} missing in {r}"
            );
        }
    }
    let lab = by_name(ranges, "lab-servers");
    assert_eq!(
        lab["id"],
        values["range:lab-servers"].as_str(),
        "ids are our network ids"
    );
    assert_eq!(lab["startIPAddress"], "10.20.0.2");
    assert_eq!(lab["endIPAddress"], "10.20.0.254");
    assert_eq!(lab["ipVersion"], "IPv4");
    assert_eq!(lab["subnetPrefixLength"], "24");
    assert_eq!(lab["gatewayAddress"], "10.20.0.1");
    assert_eq!(
        lab["dnsServerAddresses"],
        json!(["10.20.0.53", "10.20.0.54"])
    );
    assert_eq!(lab["domain"], "lab.example.com");
    assert_eq!(
        lab["dnsSearchDomains"],
        json!(["lab.example.com", "example.com"])
    );
    assert_eq!(lab["addressSpaceId"], "default");
    assert_eq!(lab["description"], "Lab servers");
    let tags = lab["tags"].as_array().expect("tags");
    assert!(
        tags.contains(&json!({"key": "env", "value": "lab"})),
        "{tags:?}"
    );
    assert!(
        tags.contains(&json!({"key": "tier", "value": "servers"})),
        "{tags:?}"
    );
    assert_eq!(lab["properties"]["vlan"], "20");
    assert_eq!(lab["properties"]["cidr"], "10.20.0.0/24");

    let prod = by_name(ranges, "prod-servers");
    assert_eq!(prod["addressSpaceId"], "prod");
    assert_eq!(prod["startIPAddress"], "172.16.10.10");
    assert_eq!(prod["endIPAddress"], "172.16.10.200");

    let v6 = by_name(ranges, "lab-servers-v6");
    assert_eq!(v6["ipVersion"], "IPv6");
    assert_eq!(v6["subnetPrefixLength"], "64");
    assert_eq!(v6["gatewayAddress"], "2001:db8:20::1");
}

#[tokio::test]
async fn range_ids_are_the_same_in_every_run() {
    let first = spawn_app().await;
    let (a, _) = walk(&first, json!(1000)).await;
    first.stop().await;
    let second = spawn_app().await;
    let (b, _) = walk(&second, json!(1000)).await;
    assert_eq!(
        ids(&a),
        ids(&b),
        "a new gateway (new data dir) gives the same ids"
    );
}

#[tokio::test]
async fn paging_returns_every_range_exactly_once() {
    let app = spawn_app().await;
    let (unpaged, _) = walk(&app, json!(1000)).await;
    // maxResults as text, the way the SDK samples send numbers.
    let (paged, pages) = walk(&app, json!("1")).await;
    assert_eq!(pages, 4, "one range per page");
    assert_eq!(ids(&paged), ids(&unpaged));
    let (paged3, pages3) = walk(&app, json!(3)).await;
    assert_eq!(pages3, 2);
    assert_eq!(ids(&paged3), ids(&unpaged));
}

#[tokio::test]
async fn later_pages_read_the_snapshot_of_the_first_one_while_networks_change() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let (before, _) = walk(&app, json!(1000)).await;
    let mut inputs = filled("get-ip-ranges", &values, &[]);
    inputs["pagingAndSorting"]["maxResults"] = json!(2);
    let first = vra_ok(&app, "get-ip-ranges", &inputs).await;
    let mut seen: Vec<Value> = first["ipRanges"].as_array().expect("list").clone();
    let token = first["nextPageToken"].as_str().expect("token").to_owned();

    // A new network appears between pages (and the listing cache is dropped).
    let carved = app
        .post(
            "/api/v1/networks",
            &json!({"block": values["block:lab-on-demand"], "prefix_len": 24, "owner": "paging-test",
                    "name": "aaa-first-by-id"}),
        )
        .send()
        .await
        .expect("carve");
    assert_eq!(carved.status(), StatusCode::CREATED);

    inputs["pagingAndSorting"]["pageToken"] = json!(token);
    for page in 2.. {
        assert!(page < 50, "paging does not end");
        let out = vra_ok(&app, "get-ip-ranges", &inputs).await;
        seen.extend(out["ipRanges"].as_array().expect("list").iter().cloned());
        match out.get("nextPageToken").and_then(Value::as_str) {
            Some(t) => inputs["pagingAndSorting"]["pageToken"] = json!(t),
            None => break,
        }
    }
    assert_eq!(
        ids(&seen),
        ids(&before),
        "no duplicate, no gap, no newcomer mid-walk"
    );
    let unique: BTreeSet<String> = ids(&seen).into_iter().collect();
    assert_eq!(unique.len(), seen.len());

    // The next enumeration sees the new network.
    let (after, _) = walk(&app, json!(2)).await;
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.iter().any(|r| r["name"] == "aaa-first-by-id"));
}

#[tokio::test]
async fn a_page_token_is_replayable_but_unknown_ones_are_refused() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let mut inputs = filled("get-ip-ranges", &values, &[]);
    inputs["pagingAndSorting"]["maxResults"] = json!(1);
    let first = vra_ok(&app, "get-ip-ranges", &inputs).await;
    inputs["pagingAndSorting"]["pageToken"] = first["nextPageToken"].clone();
    let a = vra_ok(&app, "get-ip-ranges", &inputs).await;
    let b = vra_ok(&app, "get-ip-ranges", &inputs).await;
    assert_eq!(a, b, "a retried page gives the same page");

    for bad in ["87811419dec2112cda2aa29685685d650ac1f61f", "00ff.1", "zz.1"] {
        inputs["pagingAndSorting"]["pageToken"] = json!(bad);
        let (status, body) = vra(&app, "get-ip-ranges", &inputs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            error_of(&body).1.as_deref(),
            Some("pagingAndSorting.pageToken"),
            "{body}"
        );
    }
    // A range token is no block token.
    inputs["pagingAndSorting"]["pageToken"] = first["nextPageToken"].clone();
    let (status, _) = vra(&app, "get-ip-blocks", &inputs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tag_filter_and_address_space_limit_what_an_endpoint_sees() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let mut inputs = filled("get-ip-ranges", &values, &[]);
    inputs["endpoint"]["endpointProperties"]["tagFilter"] = json!("env=lab, tier=servers");
    let out = vra_ok(&app, "get-ip-ranges", &inputs).await;
    let names: BTreeSet<&str> = out["ipRanges"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, BTreeSet::from(["lab-servers", "lab-servers-v6"]));

    let mut inputs = filled("get-ip-ranges", &values, &[]);
    inputs["endpoint"]["endpointProperties"]["addressSpace"] = json!("prod");
    let out = vra_ok(&app, "get-ip-ranges", &inputs).await;
    assert_eq!(out["ipRanges"].as_array().expect("list").len(), 1);
    assert_eq!(out["ipRanges"][0]["name"], "prod-servers");
}

#[tokio::test]
async fn get_ip_blocks_lists_blocks_with_their_settings() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let out = vra_ok(
        &app,
        "get-ip-blocks",
        &filled("get-ip-blocks", &values, &[]),
    )
    .await;
    let blocks = out["ipBlocks"].as_array().expect("ipBlocks");
    assert_eq!(blocks.len(), 1);
    let b = &blocks[0];
    assert_eq!(b["id"], values["block:lab-on-demand"].as_str());
    assert_eq!(b["name"], "lab-on-demand");
    assert_eq!(b["ipBlockCIDR"], "10.100.0.0/16");
    assert_eq!(b["ipVersion"], "IPv4");
    assert_eq!(b["addressSpaceId"], "default");
    assert_eq!(b["addressSpace"], "default");
    assert_eq!(b["domain"], "lab.example.com");
    assert_eq!(b["dnsServerAddresses"], json!(["10.20.0.53"]));
    assert!(out.get("nextPageToken").is_none());
}

#[tokio::test]
async fn get_ip_blocks_answers_an_empty_list_when_there_are_no_blocks() {
    let config = BASE_CONFIG
        .split("[[backends.local.blocks]]")
        .next()
        .expect("config")
        .to_owned();
    let app = crate::support::spawn_with(AppOptions {
        config,
        ..Default::default()
    })
    .await;
    let values = placeholders(&app).await;
    let out = vra_ok(
        &app,
        "get-ip-blocks",
        &filled("get-ip-blocks", &values, &[]),
    )
    .await;
    assert_eq!(out, json!({"ipBlocks": []}));
}

/// A replica that did not serve the first page has no snapshot for the token: it continues after
/// the token's last id over its own listing. Simulated by replacing the snapshot id of every token
/// with one no replica issued; a network carved mid-walk is then neither duplicated nor causes a gap.
#[tokio::test]
async fn page_tokens_continue_on_a_replica_that_never_saw_them() {
    let app = spawn_app().await;
    let (reference, _) = walk(&app, json!(1)).await;
    let values = placeholders(&app).await;
    let mut inputs = filled("get-ip-ranges", &values, &[]);
    inputs["pagingAndSorting"]["maxResults"] = json!(2);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let out = vra_ok(&app, "get-ip-ranges", &inputs).await;
        pages += 1;
        seen.extend(ids(out["ipRanges"].as_array().expect("ipRanges")));
        if pages == 1 {
            // Another replica's listing may change between pages; the walk stays consistent.
            let block: Value = app
                .get("/api/v1/blocks")
                .send()
                .await
                .expect("blocks")
                .json()
                .await
                .expect("json");
            let r = app
                .post(
                    "/api/v1/networks",
                    &json!({"block": block["blocks"][0]["id"], "prefix_len": 28, "owner": "mid-walk"}),
                )
                .send()
                .await
                .expect("carve");
            assert_eq!(r.status(), 201);
        }
        let Some(token) = out.get("nextPageToken").and_then(Value::as_str) else {
            break;
        };
        let (_, rest) = token.split_once('.').expect("token has a snapshot id");
        inputs["pagingAndSorting"]["pageToken"] = json!(format!("{}.{rest}", "ab".repeat(16)));
        assert!(pages < 50, "paging does not end");
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates: {seen:?}");
    for id in ids(&reference) {
        assert!(seen.contains(&id), "gap: {id} missing from {seen:?}");
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "the walk follows id order");
}
