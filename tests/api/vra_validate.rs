//! vRA Validate Endpoint, authentication and the error envelope.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::spawn_app;
use crate::vra_common::{error_of, filled, placeholders, vra, vra_ok};

#[tokio::test]
async fn validate_endpoint_accepts_the_sample_inputs_with_fields_at_the_top_level() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let out = vra_ok(
        &app,
        "validate-endpoint",
        &filled("validate-endpoint", &values, &[]),
    )
    .await;
    assert_eq!(out["statusCode"], "200");
    let message = out["message"].as_str().expect("message");
    assert!(message.starts_with("Validated successfully"), "{message}");
    assert!(message.contains("backend 'local'"), "{message}");
    assert!(out.get("error").is_none(), "{out}");
}

#[tokio::test]
async fn validate_endpoint_with_wrong_credentials_is_a_401_with_a_message() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let resp = app
        .client
        .post(app.url("/vra/v1/validate-endpoint"))
        .basic_auth("demo", Some("wrong-password"))
        .json(&filled("validate-endpoint", &values, &[]))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = resp.json().await.expect("json");
    let (message, _) = error_of(&body);
    assert!(message.contains("invalid username or password"), "{body}");
    assert!(!body.to_string().contains("wrong-password"));
}

#[tokio::test]
async fn every_vra_operation_requires_authentication() {
    let app = spawn_app().await;
    for op in [
        "validate-endpoint",
        "get-ip-ranges",
        "get-ip-blocks",
        "allocate-ip",
        "deallocate-ip",
        "update-record",
        "allocate-ip-range",
        "deallocate-ip-range",
    ] {
        let resp = app
            .client
            .post(app.url(&format!("/vra/v1/{op}")))
            .json(&json!({}))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{op}");
    }
}

#[tokio::test]
async fn an_endpoint_naming_another_backend_fails_validation_naming_the_field() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let mut inputs = filled("validate-endpoint", &values, &[]);
    inputs["endpointProperties"]["backend"] = json!("infoblox-prod");
    let (status, body) = vra(&app, "validate-endpoint", &inputs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (message, field) = error_of(&body);
    assert_eq!(field.as_deref(), Some("endpointProperties.backend"));
    assert!(
        message.contains("'infoblox-prod'") && message.contains("bound to backend 'local'"),
        "{message}"
    );
    // The matching name validates.
    inputs["endpointProperties"]["backend"] = json!("local");
    vra_ok(&app, "validate-endpoint", &inputs).await;
}

#[tokio::test]
async fn a_bad_tag_filter_fails_validation_naming_the_field() {
    let app = spawn_app().await;
    let values = placeholders(&app).await;
    let mut inputs = filled("validate-endpoint", &values, &[]);
    inputs["endpointProperties"]["tagFilter"] = json!("tier");
    let (status, body) = vra(&app, "validate-endpoint", &inputs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(&body).1.as_deref(),
        Some("endpointProperties.tagFilter")
    );
    inputs["endpointProperties"]["tagFilter"] = json!("tier=dmz");
    let out = vra_ok(&app, "validate-endpoint", &inputs).await;
    assert!(
        out["message"]
            .as_str()
            .expect("message")
            .contains("1 network(s) match"),
        "{out}"
    );
}

#[tokio::test]
async fn malformed_bodies_and_unknown_operations_get_clear_errors() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/vra/v1/allocate-ip"))
        .basic_auth("demo", Some(crate::support::DEMO_PASSWORD))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(error_of(&body).1.as_deref(), Some("body"));
    assert_eq!(body["error"]["operation"], "allocate-ip");

    let (status, body) = vra(&app, "get-ip-ranges", &json!([1, 2])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).0.contains("JSON object"), "{body}");

    let (status, body) = vra(&app, "allocate-ips", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (message, _) = error_of(&body);
    assert!(
        message.contains("'allocate-ips'") && message.contains("allocate-ip,"),
        "{message}"
    );
}
