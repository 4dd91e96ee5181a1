//! vRA Allocate IP: per-NIC results, several allocations, ranges in order, `start`/`size`,
//! idempotent retries, rollback, and input errors that name the field.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{spawn_app, spawn_with};
use crate::vra_common::{error_of, filled, held_by, placeholders, vra, vra_ok, with_tiny};

fn result_for<'a>(out: &'a Value, id: &str) -> &'a Value {
    out["ipAllocations"]
        .as_array()
        .expect("ipAllocations")
        .iter()
        .find(|a| a["ipAllocationId"] == id)
        .unwrap_or_else(|| panic!("no result for {id} in {out:#}"))
}

#[tokio::test]
async fn the_sample_request_with_text_numbers_gets_an_address_and_the_nic_settings() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let out = vra_ok(&app, "allocate-ip", &filled("allocate-ip", &values, &[])).await;
    assert_eq!(out["ipAllocations"].as_array().expect("list").len(), 1);
    let a = result_for(&out, "111bb2f0-02fd-4983-94d2-8ac11768150f");
    assert_eq!(a["ipRangeId"], values["range:lab-servers"].as_str());
    assert_eq!(a["ipVersion"], "IPv4");
    assert_eq!(
        a["ipAddresses"],
        json!(["10.20.0.2"]),
        "first free after the gateway"
    );
    assert_eq!(a["subnetPrefixLength"], "24");
    assert_eq!(a["gatewayAddresses"], json!(["10.20.0.1"]));
    assert_eq!(a["dnsServerAddresses"], json!(["10.20.0.53", "10.20.0.54"]));
    assert_eq!(a["domain"], "lab.example.com");
    assert_eq!(
        a["dnsSearchDomains"],
        json!(["lab.example.com", "example.com"])
    );

    let owner = format!("vra:{}/nic0", values["resource"]);
    assert_eq!(held_by(&app, &owner).await, vec!["10.20.0.2"]);
    let rec = crate::vra_common::allocation_at(&app, "10.20.0.2")
        .await
        .expect("record");
    assert_eq!(rec["hostname"], "external-ipam-it-mcm-323412");
    assert!(
        rec["description"]
            .as_str()
            .expect("description")
            .contains("mdzhigarov@vmware.com"),
        "{rec}"
    );
}

#[tokio::test]
async fn two_nics_are_allocated_and_matched_by_id_without_resource_owner() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let inputs = filled("allocate-ip-2nic", &values, &[]);
    assert!(inputs["resourceInfo"].get("owner").is_none(), "8.6.0 shape");
    let out = vra_ok(&app, "allocate-ip", &inputs).await;
    let nic0 = result_for(&out, "nic0-alloc");
    let nic1 = result_for(&out, "nic1-alloc");
    assert_eq!(
        out["ipAllocations"][0]["ipAllocationId"], "nic0-alloc",
        "input order"
    );
    assert_eq!(nic0["ipRangeId"], values["range:lab-servers"].as_str());
    assert_eq!(nic0["ipAddresses"], json!(["10.20.0.2"]));
    assert_eq!(nic1["ipRangeId"], values["range:lab-dmz"].as_str());
    assert_eq!(nic1["ipAddresses"], json!(["10.30.0.2"]));
    assert_eq!(nic1["gatewayAddresses"], json!(["10.30.0.1"]));
    assert_eq!(nic1["subnetPrefixLength"], "26");
    assert_eq!(nic1["domain"], "dmz.example.com");
    let rid = &values["resource"];
    assert_eq!(
        held_by(&app, &format!("vra:{rid}/nic0")).await,
        vec!["10.20.0.2"]
    );
    assert_eq!(
        held_by(&app, &format!("vra:{rid}/nic1")).await,
        vec!["10.30.0.2"]
    );
}

#[tokio::test]
async fn a_retried_request_gets_the_addresses_it_already_holds() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let inputs = filled("allocate-ip-2nic", &values, &[]);
    let first = vra_ok(&app, "allocate-ip", &inputs).await;
    let second = vra_ok(&app, "allocate-ip", &inputs).await;
    assert_eq!(first, second);
    // Another machine gets other addresses.
    let other = filled(
        "allocate-ip-2nic",
        &values,
        &[("resource", "/resources/compute/other-machine")],
    );
    let third = vra_ok(&app, "allocate-ip", &other).await;
    assert_eq!(
        result_for(&third, "nic0-alloc")["ipAddresses"],
        json!(["10.20.0.3"])
    );
    let rid = &values["resource"];
    assert_eq!(held_by(&app, &format!("vra:{rid}/nic0")).await.len(), 1);
}

#[tokio::test]
async fn a_retry_finds_its_address_even_when_an_earlier_range_has_room_again() {
    let app = spawn_with(with_tiny()).await;
    let values = placeholders(&app).await;
    let tiny = values["range:lab-tiny"].clone();
    let lab = values["range:lab-servers"].clone();
    // Fill lab-tiny with another owner, so the first attempt lands in lab-servers.
    let mut fillers = Vec::new();
    for i in 0..5 {
        let resp = app
            .post(
                "/api/v1/allocations",
                &json!({"owner": format!("filler-{i}"), "networks": [tiny]}),
            )
            .send()
            .await
            .expect("fill");
        assert_eq!(resp.status(), StatusCode::CREATED);
        let a: Value = resp.json().await.expect("json");
        fillers.push(a["id"].as_str().expect("id").to_owned());
    }
    let mut inputs = filled("allocate-ip", &values, &[]);
    inputs["ipAllocations"][0]["ipRangeIds"] = json!([tiny, lab]);
    let first = vra_ok(&app, "allocate-ip", &inputs).await;
    assert_eq!(
        first["ipAllocations"][0]["ipRangeId"],
        lab.as_str(),
        "ranges in order; full one skipped"
    );
    // lab-tiny frees up; the retry still returns the address held in lab-servers.
    let resp = app
        .delete(&format!("/api/v1/allocations/{}", fillers[0]))
        .send()
        .await
        .expect("free");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let retry = vra_ok(&app, "allocate-ip", &inputs).await;
    assert_eq!(first, retry);
    let owner = format!("vra:{}/nic0", values["resource"]);
    assert_eq!(held_by(&app, &owner).await.len(), 1, "no second address");
}

#[tokio::test]
async fn start_and_size_give_consecutive_addresses_from_one_range() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let mut inputs = filled("allocate-ip", &values, &[]);
    inputs["ipAllocations"][0]["start"] = json!("10.20.0.50");
    inputs["ipAllocations"][0]["size"] = json!("3");
    let out = vra_ok(&app, "allocate-ip", &inputs).await;
    let a = &out["ipAllocations"][0];
    assert_eq!(
        a["ipAddresses"],
        json!(["10.20.0.50", "10.20.0.51", "10.20.0.52"])
    );
    let rid = &values["resource"];
    for (i, addr) in ["10.20.0.50", "10.20.0.51", "10.20.0.52"]
        .iter()
        .enumerate()
    {
        assert_eq!(
            held_by(&app, &format!("vra:{rid}/nic0/{i}")).await,
            vec![*addr]
        );
    }
    // Retried: the same three, nothing more.
    let again = vra_ok(&app, "allocate-ip", &inputs).await;
    assert_eq!(out, again);

    // size without start: the next free ones, all in the one range.
    let mut inputs = filled(
        "allocate-ip",
        &values,
        &[("resource", "/resources/compute/size-only")],
    );
    inputs["ipAllocations"][0]["size"] = json!(2);
    let out = vra_ok(&app, "allocate-ip", &inputs).await;
    assert_eq!(
        out["ipAllocations"][0]["ipAddresses"],
        json!(["10.20.0.2", "10.20.0.3"])
    );
}

#[tokio::test]
async fn a_static_start_placeholder_means_next_free_and_a_taken_start_is_a_conflict() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let mut inputs = filled("allocate-ip", &values, &[]);
    inputs["ipAllocations"][0]["start"] = json!("0.0.0.0");
    let out = vra_ok(&app, "allocate-ip", &inputs).await;
    assert_eq!(out["ipAllocations"][0]["ipAddresses"], json!(["10.20.0.2"]));

    let mut other = filled(
        "allocate-ip",
        &values,
        &[("resource", "/resources/compute/b")],
    );
    other["ipAllocations"][0]["start"] = json!("10.20.0.2");
    let (status, body) = vra(&app, "allocate-ip", &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (message, _) = error_of(&body);
    assert!(
        message.contains("10.20.0.2") && message.contains("already allocated"),
        "{message}"
    );

    other["ipAllocations"][0]["start"] = json!("10.99.0.7");
    let (status, body) = vra(&app, "allocate-ip", &other).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_of(&body).1.as_deref(), Some("ipAllocations[0].start"));
}

#[tokio::test]
async fn exhaustion_in_the_second_allocation_rolls_back_the_first() {
    let app = spawn_with(with_tiny()).await;
    let values = placeholders(&app).await;
    let inputs = filled("allocate-ip-exhaust", &values, &[]);
    let (status, body) = vra(&app, "allocate-ip", &inputs).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (message, _) = error_of(&body);
    assert_eq!(body["error"]["code"], "exhausted");
    for part in [
        "allocate-ip: ipAllocations[1] (id \"too-big\", NIC 1)",
        "address 6 of 8",
        "lab-tiny (10.40.0.0/29",
        "no free address",
        "released",
    ] {
        assert!(message.contains(part), "'{part}' missing in: {message}");
    }
    let rid = &values["resource"];
    assert!(held_by(&app, &format!("vra:{rid}/nic0")).await.is_empty());
    for i in 0..8 {
        assert!(
            held_by(&app, &format!("vra:{rid}/nic1/{i}"))
                .await
                .is_empty()
        );
    }
    // Everything is free again: the whole of lab-tiny can be taken.
    let mut fits = filled("allocate-ip-exhaust", &values, &[]);
    fits["ipAllocations"][1]["size"] = json!(5);
    vra_ok(&app, "allocate-ip", &fits).await;
}

#[tokio::test]
async fn a_size_larger_than_its_range_fails_without_spilling_into_the_next_range() {
    let app = spawn_with(with_tiny()).await;
    let values = placeholders(&app).await;
    let mut inputs = filled("allocate-ip", &values, &[]);
    inputs["ipAllocations"][0]["ipRangeIds"] =
        json!([values["range:lab-tiny"], values["range:lab-servers"]]);
    inputs["ipAllocations"][0]["size"] = json!(6);
    let (status, body) = vra(&app, "allocate-ip", &inputs).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let rid = &values["resource"];
    for i in 0..6 {
        assert!(
            held_by(&app, &format!("vra:{rid}/nic0/{i}"))
                .await
                .is_empty()
        );
    }
}

#[tokio::test]
async fn ipv6_ranges_allocate_ipv6_addresses() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let mut inputs = filled("allocate-ip", &values, &[]);
    inputs["ipAllocations"][0]["ipRangeIds"] = json!([values["range:lab-servers-v6"]]);
    let out = vra_ok(&app, "allocate-ip", &inputs).await;
    let a = &out["ipAllocations"][0];
    assert_eq!(a["ipVersion"], "IPv6");
    assert_eq!(a["subnetPrefixLength"], "64");
    assert_eq!(a["ipAddresses"], json!(["2001:db8:20::2"]));
    assert_eq!(a["gatewayAddresses"], json!(["2001:db8:20::1"]));
}

#[tokio::test]
async fn bad_inputs_are_refused_naming_the_field_and_take_nothing() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let base = filled("allocate-ip-2nic", &values, &[]);
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "resourceInfo.id",
            Box::new(|v| {
                v["resourceInfo"].as_object_mut().expect("obj").remove("id");
            }),
        ),
        (
            "ipAllocations",
            Box::new(|v| v["ipAllocations"] = json!([])),
        ),
        (
            "ipAllocations[1].ipRangeIds",
            Box::new(|v| v["ipAllocations"][1]["ipRangeIds"] = json!([])),
        ),
        (
            "ipAllocations[1].ipRangeIds[0]",
            Box::new(|v| v["ipAllocations"][1]["ipRangeIds"] = json!(["network/ZG5z:10.0.0.0/24"])),
        ),
        (
            "ipAllocations[1].ipRangeIds",
            Box::new(|v| v["ipAllocations"][1]["ipRangeIds"] = json!({"a": 1})),
        ),
        (
            "ipAllocations[1].size",
            Box::new(|v| v["ipAllocations"][1]["size"] = json!("many")),
        ),
        (
            "ipAllocations[1].size",
            Box::new(|v| v["ipAllocations"][1]["size"] = json!(0)),
        ),
        (
            "ipAllocations[1].nicIndex",
            Box::new(|v| v["ipAllocations"][1]["nicIndex"] = json!(-1)),
        ),
        (
            "ipAllocations[1].start",
            Box::new(|v| v["ipAllocations"][1]["start"] = json!("10.30.0.300")),
        ),
        (
            "ipAllocations[1].id",
            Box::new(|v| v["ipAllocations"][1]["id"] = json!("nic0-alloc")),
        ),
        (
            "ipAllocations[0].id",
            Box::new(|v| {
                v["ipAllocations"][0]
                    .as_object_mut()
                    .expect("obj")
                    .remove("id");
            }),
        ),
    ];
    for (field, mutate) in cases {
        let mut inputs = base.clone();
        mutate(&mut inputs);
        let (status, body) = vra(&app, "allocate-ip", &inputs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(error_of(&body).1.as_deref(), Some(field), "{body}");
        assert!(error_of(&body).0.starts_with("allocate-ip: "), "{body}");
    }
    let rid = &values["resource"];
    assert!(
        held_by(&app, &format!("vra:{rid}/nic0")).await.is_empty(),
        "nothing taken"
    );
}

#[tokio::test]
async fn two_allocations_for_one_nic_get_distinct_addresses() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let mut inputs = filled("allocate-ip-2nic", &values, &[]);
    // Dual stack on NIC 0: one IPv4 and one IPv6 allocation, same nicIndex.
    inputs["ipAllocations"][1]["nicIndex"] = json!(0);
    inputs["ipAllocations"][1]["ipRangeIds"] = json!([values["range:lab-servers"]]);
    let out = vra_ok(&app, "allocate-ip", &inputs).await;
    assert_ne!(
        result_for(&out, "nic0-alloc")["ipAddresses"],
        result_for(&out, "nic1-alloc")["ipAddresses"]
    );
    let again = vra_ok(&app, "allocate-ip", &inputs).await;
    assert_eq!(out, again, "and both are stable across retries");
}
