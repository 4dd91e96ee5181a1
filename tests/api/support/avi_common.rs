//! Helpers shared by the Avi contract tests: calling the six functions, reading the lab.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestApp;

/// `POST /avi/v1/<path>` as the demo client: status and JSON body.
pub async fn call(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let resp = app
        .post(&format!("/avi/v1/{path}"), &body)
        .send()
        .await
        .expect("gateway answers");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// The raw JSON text of an answer (for key-order checks).
pub async fn call_raw(app: &TestApp, path: &str, body: Value) -> (StatusCode, String) {
    let resp = app
        .post(&format!("/avi/v1/{path}"), &body)
        .send()
        .await
        .expect("gateway answers");
    (resp.status(), resp.text().await.expect("body"))
}

pub async fn create(app: &TestApp, record: Value) -> (StatusCode, Value) {
    call(app, "create-ipam-record", json!({ "record_info": record })).await
}

pub async fn get(app: &TestApp, id: &str) -> (StatusCode, Value) {
    call(app, "get-ipam-record", json!({"record_info": {"id": id}})).await
}

pub async fn delete(app: &TestApp, id: &str) -> (StatusCode, Value) {
    call(
        app,
        "delete-ipam-record",
        json!({"record_info": {"id": id}}),
    )
    .await
}

pub async fn update(app: &TestApp, new: Value, old: Value) -> (StatusCode, Value) {
    call(
        app,
        "update-ipam-record",
        json!({"new_record_info": new, "old_record_info": old}),
    )
    .await
}

/// The exception class an error answer names.
pub fn exception(body: &Value) -> &str {
    body["error"]["exception"].as_str().unwrap_or("<none>")
}

pub fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("<none>")
}

/// Asserts an error answer: status and exception class.
pub fn assert_raises(got: &(StatusCode, Value), status: u16, class: &str) {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert_eq!(exception(&got.1), class, "{}", got.1);
}

/// Gateway network id of the exposed network with this CIDR.
pub async fn net_id(app: &TestApp, cidr: &str) -> String {
    let body = app.get_json("/api/v1/networks").await;
    body["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .find(|n| n["cidr"] == cidr)
        .unwrap_or_else(|| panic!("no network {cidr} in {body}"))["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Addresses the native API says an owner holds, sorted.
pub async fn held(app: &TestApp, owner: &str) -> Vec<String> {
    let mut out = crate::support::vra_common::held_by(app, owner).await;
    out.sort();
    out
}

/// The native API's view of one allocation by address (hostname, description); `null` if none.
pub async fn allocation_at(app: &TestApp, address: &str) -> Value {
    crate::support::vra_common::allocation_at(app, address)
        .await
        .unwrap_or(Value::Null)
}

pub fn fresh_id() -> String {
    format!("vsvip-{}", uuid::Uuid::new_v4())
}
