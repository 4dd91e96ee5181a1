//! The six Avi functions and their error mapping, end to end through the gateway, on every
//! backend kind of the lab matrix (embedded, phpIPAM fake).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::avi_common::*;
use crate::support::matrix::{BackendKind, LAB_TINY_FREE, spawn_lab};
use crate::support::{AppOptions, spawn_with};

const AUTH: &str = "CustomIpamAuthenticationErrorException";
const NOT_FOUND: &str = "CustomIpamRecordNotFoundException";
const NO_FREE: &str = "CustomIpamNoFreeIpException";
const NOT_IMPLEMENTED: &str = "CustomIpamNotImplementedException";
const GENERAL: &str = "CustomIpamGeneralException";

const SERVERS: &str = "10.20.0.0/24";
const DMZ: &str = "10.30.0.0/26";
const TINY: &str = "10.40.0.0/29";
const SERVERS6: &str = "2001:db8:20::/64";

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::BackendKind::Embedded).await
                }
            )*
        }
        mod phpipam {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::BackendKind::Phpipam).await
                }
            )*
        }
        mod infoblox {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::BackendKind::Infoblox).await
                }
            )*
        }
    };
}

on_every_backend!(
    test_login_answers_true_and_checks_the_backend_parameter,
    networks_are_listed_per_ip_type_in_tuple_order_with_counts,
    create_get_delete_round_trip_and_missing_records_raise_not_found,
    create_is_idempotent_per_vsvip_id,
    preferred_addresses_are_honoured_or_refused_with_the_field,
    subnets_are_tried_in_order_and_exhaustion_raises_no_free_ip,
    dual_stack_create_takes_both_and_a_failed_half_is_given_back,
    update_changes_allocation_type_in_place,
    update_moves_to_a_preferred_address_or_another_subnet,
    update_changes_fqdns_without_touching_the_address,
    update_of_a_missing_record_or_a_new_id_is_refused,
    lenient_input_and_errors_that_name_the_field,
);

async fn test_login_answers_true_and_checks_the_backend_parameter(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let ok = call(&app, "test-login", json!({"auth_params": {}})).await;
    assert_eq!(ok, (StatusCode::OK, json!(true)));
    let backend = if kind == BackendKind::Embedded {
        "local"
    } else {
        "ipam"
    };
    let same = call(
        &app,
        "test-login",
        json!({"auth_params": {"backend": backend}}),
    )
    .await;
    assert_eq!(same, (StatusCode::OK, json!(true)));
    let other = call(
        &app,
        "test-login",
        json!({"auth_params": {"backend": "elsewhere"}}),
    )
    .await;
    assert_raises(&other, 400, GENERAL);
    assert_eq!(other.1["error"]["field"], "auth_params.backend");
    assert!(
        message(&other.1).contains("bound to backend"),
        "{}",
        other.1
    );
    // Bad gateway credentials: 401, which the script raises as the authentication exception.
    let resp = app
        .client
        .post(app.url("/avi/v1/test-login"))
        .basic_auth("demo", Some("wrong-password"))
        .json(&json!({}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 401);
    let text = resp.text().await.expect("body");
    assert!(!text.contains("wrong-password"), "{text}");
    app.stop().await;
}

async fn networks_are_listed_per_ip_type_in_tuple_order_with_counts(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let servers = net_id(&app, SERVERS).await;
    let servers6 = net_id(&app, SERVERS6).await;

    let (status, raw) = call_raw(
        &app,
        "get-available-networks-and-subnets",
        json!({"ip_type": "V4_ONLY"}),
    )
    .await;
    assert_eq!(status, 200, "{raw}");
    // Key order is the tuple order Avi's validator reads: network, v4_subnet, v6_subnet.
    let first = raw.find("{\"network\":").expect("entries");
    let entry = &raw[first..];
    let (n, v4, v6) = (
        entry.find("\"network\"").expect("network"),
        entry.find("\"v4_subnet\"").expect("v4"),
        entry.find("\"v6_subnet\"").expect("v6"),
    );
    assert!(n < v4 && v4 < v6, "key order: {raw}");
    let v4_list: Vec<Value> = serde_json::from_str(&raw).expect("json");
    let cidrs: Vec<&str> = v4_list
        .iter()
        .map(|e| e["v4_subnet"].as_str().expect("v4"))
        .collect();
    for c in [SERVERS, DMZ, TINY, "172.16.10.0/24"] {
        assert!(cidrs.contains(&c), "{c} missing in {raw}");
    }
    assert!(v4_list.iter().all(|e| e["v6_subnet"].is_null()), "{raw}");
    let tiny = v4_list
        .iter()
        .find(|e| e["v4_subnet"] == TINY)
        .expect("tiny");
    assert_eq!(
        tiny["v4_available_ip_count"],
        LAB_TINY_FREE.to_string(),
        "{tiny}"
    );

    let (_, v6_list) = call(
        &app,
        "get-available-networks-and-subnets",
        json!({"ip_type": "V6_ONLY"}),
    )
    .await;
    let v6_list = v6_list.as_array().expect("list").clone();
    assert_eq!(v6_list.len(), 1, "{v6_list:?}");
    assert_eq!(v6_list[0]["network"], servers6.as_str());
    assert_eq!(v6_list[0]["v6_subnet"], SERVERS6);
    assert!(v6_list[0]["v4_subnet"].is_null());

    let (_, both) = call(
        &app,
        "get-available-networks-and-subnets",
        json!({"ip_type": "V4_V6"}),
    )
    .await;
    let both = both.as_array().expect("list").clone();
    // lab-servers and lab-servers-v6 share VLAN 20: one dual-stack network, listed first.
    assert_eq!(both[0]["network"], format!("{servers}+{servers6}"));
    assert_eq!(both[0]["v4_subnet"], SERVERS);
    assert_eq!(both[0]["v6_subnet"], SERVERS6);
    assert_eq!(both.len(), 1 + v4_list.len() + v6_list.len(), "{both:?}");

    let bad = call(
        &app,
        "get-available-networks-and-subnets",
        json!({"ip_type": "V5"}),
    )
    .await;
    assert_raises(&bad, 400, GENERAL);
    assert_eq!(bad.1["error"]["field"], "ip_type");
    app.stop().await;
}

async fn create_get_delete_round_trip_and_missing_records_raise_not_found(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let id = fresh_id();
    let before = get(&app, &id).await;
    assert_raises(&before, 404, NOT_FOUND);
    assert!(message(&before.1).contains(&id), "{}", before.1);

    let servers = net_id(&app, SERVERS).await;
    let record = json!({
        "id": id,
        "fqdns": ["vs1.lab.example.com"],
        "allocation_type": "V4_ONLY",
        "nw_and_subnet_list": [[servers, SERVERS, null]],
    });
    let (status, created) = create(&app, record).await;
    assert_eq!(status, 200, "{created}");
    let ip = created["v4_ip"].as_str().expect("v4_ip").to_owned();
    assert_eq!(created["v4_subnet"], SERVERS);
    assert_eq!(created["network"], servers.as_str());
    assert!(created.get("v6_ip").is_none(), "{created}");
    assert_eq!(get(&app, &id).await, (StatusCode::OK, created.clone()));
    assert_eq!(held(&app, &format!("avi:{id}")).await, vec![ip.clone()]);
    let rec = allocation_at(&app, &ip).await;
    assert_eq!(rec["hostname"], "vs1.lab.example.com", "{rec}");

    assert_eq!(delete(&app, &id).await, (StatusCode::OK, json!(true)));
    assert!(held(&app, &format!("avi:{id}")).await.is_empty());
    assert_raises(&get(&app, &id).await, 404, NOT_FOUND);
    assert_raises(&delete(&app, &id).await, 404, NOT_FOUND);
    app.stop().await;
}

async fn create_is_idempotent_per_vsvip_id(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let id = fresh_id();
    // Empty list: any exposed network of the family.
    let record = json!({"id": id, "allocation_type": "V4_V6", "nw_and_subnet_list": []});
    let first = create(&app, record.clone()).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let again = create(&app, record).await;
    assert_eq!(
        again, first,
        "a retried create returns what the record holds"
    );
    let holding = held(&app, &format!("avi:{id}")).await;
    assert_eq!(holding.len(), 2, "one v4 and one v6, not more: {holding:?}");
    // A retry that lost the v6 half (e.g. a crash) completes it without a second v4.
    let v6 = first.1["v6_ip"].as_str().expect("v6").to_owned();
    let v6_net = first.1["network"]
        .as_str()
        .expect("network")
        .split('+')
        .nth(1)
        .expect("v6 net")
        .to_owned();
    let resp = app
        .delete(&format!("/api/v1/allocations/{v6_net}~{v6}"))
        .send()
        .await
        .expect("release");
    assert_eq!(resp.status(), 204);
    let completed = create(&app, json!({"id": id, "allocation_type": "V4_V6"})).await;
    assert_eq!(completed.0, 200, "{}", completed.1);
    assert_eq!(completed.1["v4_ip"], first.1["v4_ip"]);
    assert!(completed.1["v6_ip"].is_string(), "{}", completed.1);
    assert_eq!(held(&app, &format!("avi:{id}")).await.len(), 2);
    app.stop().await;
}

async fn preferred_addresses_are_honoured_or_refused_with_the_field(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let a = fresh_id();
    let (status, rec) = create(
        &app,
        json!({"id": a, "allocation_type": "V4_V6", "preferred_ip": "10.20.0.77",
               "preferred_ip6": "2001:db8:20::77", "nw_and_subnet_list": []}),
    )
    .await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["v4_ip"], "10.20.0.77");
    assert_eq!(rec["v6_ip"], "2001:db8:20::77");
    assert_eq!(rec["v4_subnet"], SERVERS);

    // Taken by another record: refused, and nothing is left behind.
    let b = fresh_id();
    let taken = create(
        &app,
        json!({"id": b, "allocation_type": "V4_ONLY", "preferred_ip": "10.20.0.77"}),
    )
    .await;
    assert_eq!(exception(&taken.1), GENERAL, "{}", taken.1);
    assert!(message(&taken.1).contains("10.20.0.77"), "{}", taken.1);
    assert!(held(&app, &format!("avi:{b}")).await.is_empty());

    // Outside every candidate subnet: the field is named.
    let outside = create(
        &app,
        json!({"id": b, "allocation_type": "V4_ONLY", "preferred_ip": "10.99.0.5",
               "nw_and_subnet_list": [["x", SERVERS, null]]}),
    )
    .await;
    assert_raises(&outside, 400, GENERAL);
    assert_eq!(outside.1["error"]["field"], "record_info.preferred_ip");

    // A retried create with another preferred address does not silently answer the old one.
    let differs = create(
        &app,
        json!({"id": a, "allocation_type": "V4_ONLY", "preferred_ip": "10.20.0.78"}),
    )
    .await;
    assert_eq!(exception(&differs.1), GENERAL, "{}", differs.1);
    assert!(
        message(&differs.1).contains("UpdateIpamRecord"),
        "{}",
        differs.1
    );
    app.stop().await;
}

async fn subnets_are_tried_in_order_and_exhaustion_raises_no_free_ip(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let tiny_only = |id: &str| {
        json!({"id": id, "allocation_type": "V4_ONLY",
        "nw_and_subnet_list": [["tiny", TINY, null]]})
    };
    for k in 0..LAB_TINY_FREE {
        let (status, rec) = create(&app, tiny_only(&format!("fill-{k}"))).await;
        assert_eq!(status, 200, "{rec}");
        assert_eq!(rec["v4_subnet"], TINY);
    }
    let full = create(&app, tiny_only("one-too-many")).await;
    assert_raises(&full, 409, NO_FREE);
    assert!(message(&full.1).contains(TINY), "{}", full.1);
    // The next tuple is tried when the first is full; an unknown subnet is skipped.
    let (status, rec) = create(
        &app,
        json!({"id": "spill", "allocation_type": "V4_ONLY", "nw_and_subnet_list": [
            ["gone", "192.0.2.0/24", null], ["tiny", TINY, null], ["dmz", DMZ, null]]}),
    )
    .await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["v4_subnet"], DMZ);
    // Only unknown subnets: bad input naming them.
    let unknown = create(
        &app,
        json!({"id": "nowhere", "allocation_type": "V4_ONLY",
               "nw_and_subnet_list": [["gone", "192.0.2.0/24", null]]}),
    )
    .await;
    assert_raises(&unknown, 400, GENERAL);
    assert!(
        message(&unknown.1).contains("192.0.2.0/24"),
        "{}",
        unknown.1
    );
    app.stop().await;
}

async fn dual_stack_create_takes_both_and_a_failed_half_is_given_back(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let servers = net_id(&app, SERVERS).await;
    let servers6 = net_id(&app, SERVERS6).await;
    let pair = format!("{servers}+{servers6}");
    let id = fresh_id();
    let (status, rec) = create(
        &app,
        json!({"id": id, "allocation_type": "V4_V6", "nw_and_subnet_list": [[pair, SERVERS, SERVERS6]]}),
    )
    .await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["network"], pair.as_str());
    assert_eq!(rec["v4_subnet"], SERVERS);
    assert_eq!(rec["v6_subnet"], SERVERS6);
    assert_eq!(get(&app, &id).await.1, rec);

    // The v6 half cannot be had (its preferred address is taken): the v4 half is released.
    let other = fresh_id();
    let taken6 = rec["v6_ip"].as_str().expect("v6").to_owned();
    let failed = create(
        &app,
        json!({"id": other, "allocation_type": "V4_V6", "preferred_ip6": taken6,
               "nw_and_subnet_list": [[pair, SERVERS, SERVERS6]]}),
    )
    .await;
    assert_eq!(exception(&failed.1), GENERAL, "{}", failed.1);
    assert!(message(&failed.1).contains("released"), "{}", failed.1);
    assert!(
        held(&app, &format!("avi:{other}")).await.is_empty(),
        "no half left behind"
    );

    // Dual stack with only a v4 subnet given: refused before anything is taken.
    let half = create(
        &app,
        json!({"id": other, "allocation_type": "V4_V6", "nw_and_subnet_list": [["x", SERVERS, null]]}),
    )
    .await;
    assert_raises(&half, 400, GENERAL);
    assert!(message(&half.1).contains("ipv6"), "{}", half.1);
    assert!(held(&app, &format!("avi:{other}")).await.is_empty());
    app.stop().await;
}

async fn update_changes_allocation_type_in_place(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let id = fresh_id();
    let owner = format!("avi:{id}");
    let v4_only = json!({"id": id, "allocation_type": "V4_ONLY", "nw_and_subnet_list": [["s", SERVERS, null]]});
    let (_, created) = create(&app, v4_only.clone()).await;
    let v4 = created["v4_ip"].as_str().expect("v4").to_owned();

    // V4_ONLY → V4_V6: the v4 address stays, a v6 one is added.
    let dual = json!({"id": id, "allocation_type": "V4_V6", "nw_and_subnet_list": [["p", SERVERS, SERVERS6]]});
    let (status, up) = update(&app, dual.clone(), v4_only.clone()).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["v4_ip"], v4.as_str());
    let v6 = up["v6_ip"].as_str().expect("v6").to_owned();
    assert_eq!(get(&app, &id).await.1, up);

    // V4_V6 → V6_ONLY: the v6 address stays, the v4 one is released.
    let v6_only = json!({"id": id, "allocation_type": "V6_ONLY", "nw_and_subnet_list": [["s6", null, SERVERS6]]});
    let (status, up) = update(&app, v6_only.clone(), dual).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["v6_ip"], v6.as_str());
    assert!(up.get("v4_ip").is_none(), "{up}");
    assert_eq!(held(&app, &owner).await, vec![v6.clone()]);
    assert_eq!(get(&app, &id).await.1, up);

    // V6_ONLY → V4_ONLY (the validator's own case, the other way round).
    let (status, up) = update(&app, v4_only, v6_only).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["v4_subnet"], SERVERS);
    assert!(up.get("v6_ip").is_none(), "{up}");
    assert_eq!(held(&app, &owner).await.len(), 1);
    assert_eq!(get(&app, &id).await.1, up);
    app.stop().await;
}

async fn update_moves_to_a_preferred_address_or_another_subnet(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let id = fresh_id();
    let owner = format!("avi:{id}");
    let old = json!({"id": id, "allocation_type": "V4_ONLY", "nw_and_subnet_list": [["s", SERVERS, null]]});
    let (_, created) = create(&app, old.clone()).await;
    let first = created["v4_ip"].as_str().expect("v4").to_owned();

    // Same subnet, new preferred address: taken, then the old one is released.
    let moved = json!({"id": id, "allocation_type": "V4_ONLY", "preferred_ip": "10.20.0.200",
                       "nw_and_subnet_list": [["s", SERVERS, null]]});
    let (status, up) = update(&app, moved.clone(), old).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["v4_ip"], "10.20.0.200");
    assert_eq!(held(&app, &owner).await, vec!["10.20.0.200".to_owned()]);
    assert!(
        allocation_at(&app, &first).await.is_null(),
        "{first} was released"
    );
    // Retried: nothing changes.
    assert_eq!(update(&app, moved.clone(), moved.clone()).await.1, up);

    // Another subnet: the address moves there.
    let dmz =
        json!({"id": id, "allocation_type": "V4_ONLY", "nw_and_subnet_list": [["d", DMZ, null]]});
    let (status, up) = update(&app, dmz.clone(), moved).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["v4_subnet"], DMZ);
    assert_eq!(held(&app, &owner).await.len(), 1);

    // A move that cannot happen leaves the record as it was.
    let blocker = fresh_id();
    let (_, b) = create(&app, json!({"id": blocker, "preferred_ip": "10.30.0.40"})).await;
    assert_eq!(b["v4_ip"], "10.30.0.40");
    let clash = json!({"id": id, "allocation_type": "V4_ONLY", "preferred_ip": "10.30.0.40",
                       "nw_and_subnet_list": [["d", DMZ, null]]});
    let refused = update(&app, clash, dmz).await;
    assert_eq!(exception(&refused.1), GENERAL, "{}", refused.1);
    assert!(message(&refused.1).contains("unchanged"), "{}", refused.1);
    assert_eq!(get(&app, &id).await.1, up);
    app.stop().await;
}

async fn update_changes_fqdns_without_touching_the_address(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let id = fresh_id();
    let old = json!({"id": id, "fqdns": ["a.lab.example.com"], "allocation_type": "V4_ONLY"});
    let (_, created) = create(&app, old.clone()).await;
    let ip = created["v4_ip"].as_str().expect("v4").to_owned();
    assert_eq!(
        allocation_at(&app, &ip).await["hostname"],
        "a.lab.example.com"
    );
    let new = json!({"id": id, "fqdns": ["b.lab.example.com", "c.lab.example.com"], "allocation_type": "V4_ONLY"});
    let (status, up) = update(&app, new, old).await;
    assert_eq!(status, 200, "{up}");
    assert_eq!(up, created, "same address, same record");
    let rec = allocation_at(&app, &ip).await;
    assert_eq!(rec["hostname"], "b.lab.example.com", "{rec}");
    let description = rec["description"].as_str().unwrap_or_default();
    if kind == BackendKind::Phpipam {
        // phpIPAM's description column holds 64 characters: the start of the new description.
        assert!(
            description.starts_with(&format!("Avi VS VIP {id} (b.lab"))
                && description.ends_with('…')
                && description.chars().count() == 64,
            "{rec}"
        );
    } else {
        assert!(description.contains("c.lab.example.com"), "{rec}");
    }
    app.stop().await;
}

async fn update_of_a_missing_record_or_a_new_id_is_refused(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    let missing = update(
        &app,
        json!({"id": "nope", "allocation_type": "V6_ONLY"}),
        json!({"id": "nope", "allocation_type": "V4_ONLY"}),
    )
    .await;
    assert_raises(&missing, 404, NOT_FOUND);
    let id = fresh_id();
    create(&app, json!({"id": id})).await;
    let renamed = update(&app, json!({"id": "other"}), json!({"id": id})).await;
    assert_raises(&renamed, 501, NOT_IMPLEMENTED);
    let unknown = call(&app, "GetIpamRecords", json!({})).await;
    assert_raises(&unknown, 501, NOT_IMPLEMENTED);
    app.stop().await;
}

async fn lenient_input_and_errors_that_name_the_field(kind: BackendKind) {
    let app = spawn_lab(kind, false).await;
    // Numbers as text and text as numbers, lower case, "None" for absent.
    let (status, rec) = create(
        &app,
        json!({"id": 4711, "allocation_type": "v4_only", "preferred_ip": "None",
               "fqdns": "x.lab.example.com", "nw_and_subnet_list": [["s", SERVERS, "None", "253"]]}),
    )
    .await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(get(&app, "4711").await.1, rec);
    for (body, field) in [
        (
            json!({"record_info": {"allocation_type": "V4_ONLY"}}),
            "record_info.id",
        ),
        (
            json!({"record_info": {"id": "x", "allocation_type": "V7"}}),
            "record_info.allocation_type",
        ),
        (
            json!({"record_info": {"id": "x", "nw_and_subnet_list": [["n", "10.0.0.0/33", null]]}}),
            "record_info.nw_and_subnet_list[0][1]",
        ),
        (
            json!({"record_info": {"id": "x", "preferred_ip6": "10.0.0.1"}}),
            "record_info.preferred_ip6",
        ),
        (json!({"record_info": "x"}), "record_info"),
    ] {
        let got = call(&app, "create-ipam-record", body.clone()).await;
        assert_raises(&got, 400, GENERAL);
        assert_eq!(got.1["error"]["field"], field, "{body} → {}", got.1);
    }
    let not_json = app
        .client
        .post(app.url("/avi/v1/create-ipam-record"))
        .basic_auth("demo", Some(crate::support::DEMO_PASSWORD))
        .body("{not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(not_json.status(), 400);
    let body: Value = not_json.json().await.expect("json");
    assert_eq!(exception(&body), GENERAL, "{body}");
    app.stop().await;
}

// ------------------------------------------------------------------------------------------------
// Backend trouble (phpIPAM): refused credentials, backend down.

#[tokio::test]
async fn a_backend_refusing_the_gateway_credentials_raises_the_authentication_exception() {
    let fake = crate::support::phpipam_fake::FakePhpipam::start().await;
    let app = spawn_with(AppOptions {
        config: crate::support::phpipam::config(
            &fake.url,
            "username = \"Admin\"\npassword = \"not-the-password\"",
        ),
        ..Default::default()
    })
    .await;
    let got = call(&app, "test-login", json!({})).await;
    assert_eq!(exception(&got.1), AUTH, "{}", got.1);
    assert!(!got.1.to_string().contains("not-the-password"), "{}", got.1);
    app.stop().await;
}

#[tokio::test]
async fn a_backend_that_is_down_raises_the_general_exception_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let app = spawn_with(AppOptions {
        config: crate::support::phpipam::config(&format!("http://127.0.0.1:{port}"), ""),
        ..Default::default()
    })
    .await;
    for (path, body) in [
        ("test-login", json!({})),
        (
            "get-available-networks-and-subnets",
            json!({"ip_type": "V4_ONLY"}),
        ),
        ("create-ipam-record", json!({"record_info": {"id": "x"}})),
        ("get-ipam-record", json!({"record_info": {"id": "x"}})),
    ] {
        let got = call(&app, path, body).await;
        assert!(got.0.is_server_error(), "{path}: {:?}", got);
        assert_eq!(exception(&got.1), GENERAL, "{path}: {}", got.1);
        assert!(
            message(&got.1).contains("ipam"),
            "{path}: names the backend: {}",
            got.1
        );
    }
    app.stop().await;
}
