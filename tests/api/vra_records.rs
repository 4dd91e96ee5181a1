//! vRA Deallocate IP and Update Record.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::spawn_app;
use crate::vra_common::{allocation_at, error_of, filled, held_by, placeholders, vra, vra_ok};

#[tokio::test]
async fn deallocating_twice_succeeds_both_times() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    vra_ok(&app, "allocate-ip", &filled("allocate-ip", &values, &[])).await;
    let inputs = filled("deallocate-ip", &values, &[("address", "10.20.0.2")]);
    let out = vra_ok(&app, "deallocate-ip", &inputs).await;
    assert_eq!(
        out,
        json!({"ipDeallocations": [{"ipDeallocationId": "111bb2f0-02fd-4983-94d2-8ac11768150f", "message": "Success"}]})
    );
    assert!(allocation_at(&app, "10.20.0.2").await.is_none(), "released");
    let again = vra_ok(&app, "deallocate-ip", &inputs).await;
    assert_eq!(
        again["ipDeallocations"][0]["ipDeallocationId"],
        "111bb2f0-02fd-4983-94d2-8ac11768150f"
    );
    assert!(
        again["ipDeallocations"][0]["message"]
            .as_str()
            .expect("message")
            .contains("already released")
    );
}

#[tokio::test]
async fn a_late_deallocation_leaves_an_address_that_another_machine_now_holds() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    vra_ok(&app, "allocate-ip", &filled("allocate-ip", &values, &[])).await;
    let inputs = filled("deallocate-ip", &values, &[("address", "10.20.0.2")]);
    vra_ok(&app, "deallocate-ip", &inputs).await;
    // Another machine gets the freed address ...
    let other = filled(
        "allocate-ip",
        &values,
        &[("resource", "/resources/compute/next")],
    );
    let out = vra_ok(&app, "allocate-ip", &other).await;
    assert_eq!(out["ipAllocations"][0]["ipAddresses"], json!(["10.20.0.2"]));
    // ... and a repeated deallocation of the first machine must not take it away.
    let again = vra_ok(&app, "deallocate-ip", &inputs).await;
    assert!(
        again["ipDeallocations"][0]["message"]
            .as_str()
            .expect("message")
            .contains("not released"),
        "{again}"
    );
    assert_eq!(
        held_by(&app, "vra:/resources/compute/next/nic0").await,
        vec!["10.20.0.2"]
    );
}

#[tokio::test]
async fn deallocate_checks_every_item_before_releasing_any() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    vra_ok(&app, "allocate-ip", &filled("allocate-ip", &values, &[])).await;
    let mut inputs = filled("deallocate-ip", &values, &[("address", "10.20.0.2")]);
    let mut bad = inputs["ipDeallocations"][0].clone();
    bad["ipAddress"] = json!("not-an-ip");
    inputs["ipDeallocations"]
        .as_array_mut()
        .expect("list")
        .push(bad);
    let (status, body) = vra(&app, "deallocate-ip", &inputs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body).1.as_deref(),
        Some("ipDeallocations[1].ipAddress")
    );
    assert!(
        allocation_at(&app, "10.20.0.2").await.is_some(),
        "nothing released"
    );
}

#[tokio::test]
async fn update_record_writes_the_mac_and_hostname() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    vra_ok(&app, "allocate-ip", &filled("allocate-ip", &values, &[])).await;
    let inputs = filled("update-record", &values, &[("address", "10.20.0.2")]);
    let out = vra_ok(&app, "update-record", &inputs).await;
    assert_eq!(out, json!({"updateResults": ["Success"]}));
    let rec = allocation_at(&app, "10.20.0.2").await.expect("record");
    assert_eq!(rec["mac"], "00:50:56:aa:bb:cc", "normalised");
    assert_eq!(
        rec["hostname"], "bond-006",
        "resourceInfo.hostname wins over name"
    );
    let mut with_host = inputs.clone();
    with_host["hostName"] = json!("web-01.lab.example.com");
    vra_ok(&app, "update-record", &with_host).await;
    let rec = allocation_at(&app, "10.20.0.2").await.expect("record");
    assert_eq!(
        rec["hostname"], "web-01.lab.example.com",
        "the contract's hostName first"
    );
}

#[tokio::test]
async fn update_record_refuses_an_address_this_machine_does_not_hold() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    vra_ok(&app, "allocate-ip", &filled("allocate-ip", &values, &[])).await;
    let stranger = filled(
        "update-record",
        &values,
        &[
            ("address", "10.20.0.2"),
            ("resource", "/resources/compute/stranger"),
        ],
    );
    let (status, body) = vra(&app, "update-record", &stranger).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (message, _) = error_of(&body);
    assert!(
        message.contains("addressInfos[0] (10.20.0.2)")
            && message.contains("not held by this machine"),
        "{message}"
    );
    assert!(allocation_at(&app, "10.20.0.2").await.expect("rec")["mac"].is_null());

    let free = filled("update-record", &values, &[("address", "10.20.0.99")]);
    let (status, body) = vra(&app, "update-record", &free).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&body).0.contains("not allocated"), "{body}");
}

#[tokio::test]
async fn update_record_with_a_bad_mac_names_the_field() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    vra_ok(&app, "allocate-ip", &filled("allocate-ip", &values, &[])).await;
    let mut inputs = filled("update-record", &values, &[("address", "10.20.0.2")]);
    inputs["addressInfos"][0]["macAddress"] = json!("00:50:56");
    let (status, body) = vra(&app, "update-record", &inputs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body).1.as_deref(),
        Some("addressInfos[0].macAddress")
    );
}
