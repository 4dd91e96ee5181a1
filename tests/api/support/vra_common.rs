//! Helpers shared by the vRA contract tests: fixtures, placeholder filling, a small config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{AppOptions, BASE_CONFIG, TestApp};

/// A /29 for exhaustion tests: hosts .1-.6, gateway .1, so five addresses to give.
pub const TINY_NETWORK: &str = r#"
[[backends.local.networks]]
name = "lab-tiny"
cidr = "10.40.0.0/29"
description = "Five addresses, for exhaustion tests"
gateway = "10.40.0.1"
dns_servers = ["10.20.0.53"]
domain = "tiny.example.com"
tags = { env = "lab", tier = "tiny" }
"#;

/// The default config plus `lab-tiny`.
pub fn config_with_tiny() -> String {
    format!("{}\n{TINY_NETWORK}", *BASE_CONFIG)
}

pub fn with_tiny() -> AppOptions {
    AppOptions {
        config: config_with_tiny(),
        ..Default::default()
    }
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/vra")
}

/// `fixtures/vra/<name>.json`, placeholders untouched.
pub fn fixture(name: &str) -> Value {
    let path = fixtures_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces every `{{key}}` inside strings with `values[key]`; panics on an unknown key.
pub fn fill(value: &Value, values: &BTreeMap<String, String>) -> Value {
    match value {
        Value::String(s) => {
            let mut out = s.clone();
            while let Some(start) = out.find("{{") {
                let end = out[start..].find("}}").expect("closed placeholder") + start;
                let key = &out[start + 2..end];
                let v = values
                    .get(key)
                    .unwrap_or_else(|| panic!("no value for placeholder {{{{{key}}}}}"));
                out = format!("{}{}{}", &out[..start], v, &out[end + 2..]);
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, values)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill(v, values)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Placeholder values for an app: host, `range:<name>` for every network, `block:<name>` for
/// every block, and a fresh `resource` id.
pub async fn placeholders(app: &TestApp) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let host = app.base_url.split("://").nth(1).expect("scheme").to_owned();
    values.insert("host".into(), host);
    values.insert(
        "resource".into(),
        format!("/resources/compute/{}", uuid::Uuid::new_v4().simple()),
    );
    let nets: Value = app
        .get("/api/v1/networks")
        .send()
        .await
        .expect("networks")
        .json()
        .await
        .expect("json");
    for n in nets["networks"].as_array().expect("networks") {
        values.insert(
            format!("range:{}", n["name"].as_str().expect("name")),
            n["id"].as_str().expect("id").to_owned(),
        );
    }
    let blocks: Value = app
        .get("/api/v1/blocks")
        .send()
        .await
        .expect("blocks")
        .json()
        .await
        .expect("json");
    for b in blocks["blocks"].as_array().expect("blocks") {
        values.insert(
            format!("block:{}", b["name"].as_str().expect("name")),
            b["id"].as_str().expect("id").to_owned(),
        );
    }
    values
}

/// A fixture with its placeholders filled from `values` (plus any `extra`).
pub fn filled(name: &str, values: &BTreeMap<String, String>, extra: &[(&str, &str)]) -> Value {
    let mut all = values.clone();
    for (k, v) in extra {
        all.insert((*k).to_owned(), (*v).to_owned());
    }
    fill(&fixture(name), &all)
}

/// `POST /vra/v1/<operation>` with the demo client; status and JSON body.
pub async fn vra(app: &TestApp, operation: &str, body: &Value) -> (StatusCode, Value) {
    let resp = app
        .post(&format!("/vra/v1/{operation}"), body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Like [`vra`], asserting 200.
pub async fn vra_ok(app: &TestApp, operation: &str, body: &Value) -> Value {
    let (status, out) = vra(app, operation, body).await;
    assert_eq!(status, StatusCode::OK, "{operation} failed: {out:#}");
    out
}

/// Addresses held by an owner, per the native API.
pub async fn held_by(app: &TestApp, owner: &str) -> Vec<String> {
    let body: Value = app
        .get(&format!(
            "/api/v1/allocations?owner={}",
            form_urlencoded::byte_serialize(owner.as_bytes()).collect::<String>()
        ))
        .send()
        .await
        .expect("find")
        .json()
        .await
        .expect("json");
    body["allocations"]
        .as_array()
        .expect("allocations")
        .iter()
        .map(|a| a["address"].as_str().expect("address").to_owned())
        .collect()
}

/// The allocation at an address, if any, per the native API.
pub async fn allocation_at(app: &TestApp, address: &str) -> Option<Value> {
    let body: Value = app
        .get(&format!("/api/v1/allocations?address={address}"))
        .send()
        .await
        .expect("find")
        .json()
        .await
        .expect("json");
    body["allocations"]
        .as_array()
        .expect("allocations")
        .first()
        .cloned()
}

/// The error envelope's message and field.
pub fn error_of(body: &Value) -> (String, Option<String>) {
    let e = &body["error"];
    (
        e["message"].as_str().unwrap_or_default().to_owned(),
        e["field"].as_str().map(str::to_owned),
    )
}
