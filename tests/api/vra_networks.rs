//! vRA on-demand networks: Allocate IP Range and Deallocate IP Range.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::spawn_app;
use crate::vra_common::{error_of, filled, placeholders, vra, vra_ok};

#[tokio::test]
async fn allocate_ip_range_carves_a_network_and_returns_it_as_an_ip_range() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let out = vra_ok(
        &app,
        "allocate-ip-range",
        &filled("allocate-ip-range", &values, &[]),
    )
    .await;
    let r = &out["ipRange"];
    for key in [
        "id",
        "name",
        "startIPAddress",
        "endIPAddress",
        "ipVersion",
        "subnetPrefixLength",
    ] {
        assert!(r[key].is_string(), "{key} missing in {r}");
    }
    assert_eq!(r["name"], "net1-mcm223-126361015194");
    assert_eq!(r["subnetPrefixLength"], "28");
    assert_eq!(r["properties"]["cidr"], "10.100.0.0/28");
    assert_eq!(r["gatewayAddress"], "10.100.0.1");
    assert_eq!(r["startIPAddress"], "10.100.0.2");
    assert_eq!(r["endIPAddress"], "10.100.0.14");
    assert_eq!(r["domain"], "lab.example.com", "inherited from the block");
    assert_eq!(r["dnsServerAddresses"], json!(["10.20.0.53"]));
    assert_eq!(r["ipVersion"], "IPv4");

    // It is a range like any other: listed, and addresses can be taken in it.
    let ranges = vra_ok(
        &app,
        "get-ip-ranges",
        &filled("get-ip-ranges", &values, &[]),
    )
    .await;
    assert!(
        ranges["ipRanges"]
            .as_array()
            .expect("list")
            .iter()
            .any(|x| x["id"] == r["id"])
    );
    let mut alloc = filled(
        "allocate-ip",
        &values,
        &[("resource", "/resources/compute/on-net")],
    );
    alloc["ipAllocations"][0]["ipRangeIds"] = json!([r["id"]]);
    let a = vra_ok(&app, "allocate-ip", &alloc).await;
    assert_eq!(a["ipAllocations"][0]["ipAddresses"], json!(["10.100.0.2"]));
}

#[tokio::test]
async fn allocate_ip_range_is_idempotent_per_resource() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let inputs = filled("allocate-ip-range", &values, &[]);
    let first = vra_ok(&app, "allocate-ip-range", &inputs).await;
    let again = vra_ok(&app, "allocate-ip-range", &inputs).await;
    assert_eq!(first["ipRange"]["id"], again["ipRange"]["id"]);
    let other = filled(
        "allocate-ip-range",
        &values,
        &[("resource", "/resources/sub-networks/other")],
    );
    let second = vra_ok(&app, "allocate-ip-range", &other).await;
    assert_ne!(first["ipRange"]["id"], second["ipRange"]["id"]);
    assert_eq!(second["ipRange"]["properties"]["cidr"], "10.100.0.16/28");
}

#[tokio::test]
async fn allocate_ip_range_honours_subnet_cidr_and_skips_blocks_that_do_not_hold_it() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let mut inputs = filled("allocate-ip-range", &values, &[]);
    inputs["ipRangeAllocation"]
        .as_object_mut()
        .expect("obj")
        .remove("subnetPrefixLength");
    inputs["ipRangeAllocation"]["subnetCidr"] = json!("10.100.42.0/24");
    let out = vra_ok(&app, "allocate-ip-range", &inputs).await;
    assert_eq!(out["ipRange"]["properties"]["cidr"], "10.100.42.0/24");
    assert_eq!(out["ipRange"]["subnetPrefixLength"], "24");

    let mut outside = filled(
        "allocate-ip-range",
        &values,
        &[("resource", "/resources/sub-networks/x")],
    );
    outside["ipRangeAllocation"]["subnetCidr"] = json!("192.168.197.0/28");
    let (status, body) = vra(&app, "allocate-ip-range", &outside).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        error_of(&body).1.as_deref(),
        Some("ipRangeAllocation.subnetCidr")
    );
}

#[tokio::test]
async fn allocate_ip_range_input_errors_name_the_field() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let base = filled("allocate-ip-range", &values, &[]);
    let cases: Vec<(&str, Value)> = vec![
        (
            "ipRangeAllocation.subnetPrefixLength",
            json!({"subnetPrefixLength": null}),
        ),
        (
            "ipRangeAllocation.subnetPrefixLength",
            json!({"subnetPrefixLength": "200"}),
        ),
        ("ipRangeAllocation.ipBlockIds", json!({"ipBlockIds": []})),
        (
            "ipRangeAllocation.ipBlockIds[0]",
            json!({"ipBlockIds": ["block1"]}),
        ),
        (
            "ipRangeAllocation.subnetCidr",
            json!({"subnetCidr": "10.100.0.1/24"}),
        ),
    ];
    for (field, patch) in cases {
        let mut inputs = base.clone();
        for (k, v) in patch.as_object().expect("obj") {
            inputs["ipRangeAllocation"][k] = v.clone();
        }
        let (status, body) = vra(&app, "allocate-ip-range", &inputs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(error_of(&body).1.as_deref(), Some(field), "{body}");
    }
    let mut no_range = base.clone();
    no_range
        .as_object_mut()
        .expect("obj")
        .remove("ipRangeAllocation");
    let (status, body) = vra(&app, "allocate-ip-range", &no_range).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body).1.as_deref(), Some("ipRangeAllocation"));
}

#[tokio::test]
async fn deallocate_ip_range_releases_the_network_and_succeeds_again_when_gone() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let out = vra_ok(
        &app,
        "allocate-ip-range",
        &filled("allocate-ip-range", &values, &[]),
    )
    .await;
    let id = out["ipRange"]["id"].as_str().expect("id").to_owned();

    // While an address is held in it, the network stays, and the error says why.
    let mut alloc = filled(
        "allocate-ip",
        &values,
        &[("resource", "/resources/compute/on-net")],
    );
    alloc["ipAllocations"][0]["ipRangeIds"] = json!([id]);
    vra_ok(&app, "allocate-ip", &alloc).await;
    let dealloc = filled("deallocate-ip-range", &values, &[("range_id", &id)]);
    let (status, body) = vra(&app, "deallocate-ip-range", &dealloc).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        error_of(&body)
            .0
            .contains("still holds 1 allocated address"),
        "{body}"
    );

    let mut free = filled(
        "deallocate-ip",
        &values,
        &[
            ("address", "10.100.0.2"),
            ("resource", "/resources/compute/on-net"),
        ],
    );
    free["ipDeallocations"][0]["ipRangeId"] = json!(id);
    vra_ok(&app, "deallocate-ip", &free).await;

    let out = vra_ok(&app, "deallocate-ip-range", &dealloc).await;
    assert!(out["message"].as_str().expect("message").contains(&id));
    let ranges = vra_ok(
        &app,
        "get-ip-ranges",
        &filled("get-ip-ranges", &values, &[]),
    )
    .await;
    assert!(
        !ranges["ipRanges"]
            .as_array()
            .expect("list")
            .iter()
            .any(|x| x["id"] == id)
    );
    vra_ok(&app, "deallocate-ip-range", &dealloc).await;
}

#[tokio::test]
async fn deallocate_ip_range_refuses_a_configured_network() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let lab = values["range:lab-servers"].clone();
    let inputs = filled("deallocate-ip-range", &values, &[("range_id", &lab)]);
    let (status, body) = vra(&app, "deallocate-ip-range", &inputs).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        error_of(&body).0.contains("comes from the config"),
        "{body}"
    );
}
