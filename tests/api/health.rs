use crate::support::{AppOptions, DEMO_PASSWORD, spawn_app, spawn_with};

#[tokio::test]
async fn healthz_and_readyz_answer_without_credentials() {
    let app = spawn_app().await;
    let h = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(h.status(), 200);
    let r = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["ready"], true);
    assert_eq!(body["backends"]["local"]["ready"], true);
    assert_eq!(body["backends"]["local"]["kind"], "embedded");
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    let id = r.headers().get("x-request-id").expect("request id");
    assert_eq!(id.to_str().expect("ascii").len(), 36, "a UUID");
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .expect("healthz");
    assert_eq!(
        r.headers()["x-request-id"],
        "caller-chosen-id",
        "kept when given"
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_paths_get_a_json_404() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/nope")).send().await.expect("get");
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
    app.stop().await;
}

#[tokio::test]
async fn metrics_listener_reports_requests_backend_calls_and_cache() {
    let app = spawn_with(AppOptions {
        metrics: true,
        ..Default::default()
    })
    .await;
    for _ in 0..2 {
        let r = app.get("/api/v1/networks").send().await.expect("list");
        assert_eq!(r.status(), 200);
    }
    let url = app.metrics_url.clone().expect("metrics url");
    let text = app
        .client
        .get(&url)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(
            "ipamgw_http_requests_total{route=\"/api/v1/networks\",method=\"GET\",status=\"200\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("ipamgw_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("ipamgw_backend_call_duration_seconds_bucket{backend=\"local\",op=\"networks\",outcome=\"ok\""), "{text}");
    assert!(
        text.contains("ipamgw_cache_requests_total{cache=\"networks\",result=\"hit\"}"),
        "{text}"
    );
    assert!(
        text.contains("ipamgw_cache_requests_total{cache=\"networks\",result=\"miss\"}"),
        "{text}"
    );
    assert!(!text.contains(DEMO_PASSWORD), "no secret in metrics");
    // The metrics port serves metrics only.
    let r = app
        .client
        .get(url.replace("/metrics", "/api/v1/networks"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    app.stop().await;
}

/// `/readyz` asks each IPAM one small authenticated question, not for its whole listing: probes
/// every few seconds from every replica stay cheap with 10,000 networks.
#[tokio::test]
async fn readyz_costs_one_small_request_per_probe_on_phpipam_and_infoblox() {
    use crate::support::matrix::{BackendKind, spawn_lab};
    for kind in [BackendKind::Phpipam, BackendKind::Infoblox] {
        let lab = spawn_lab(kind, false).await;
        let requests = || match (lab.phpipam(), lab.infoblox()) {
            (Some(f), _) => f.with(|s| s.requests),
            (_, Some(f)) => f.with(|s| s.requests),
            _ => unreachable!("a phpIPAM or Infoblox lab"),
        };
        let probe = || async {
            let r = lab
                .client
                .get(lab.url("/readyz"))
                .send()
                .await
                .expect("readyz");
            let status = r.status();
            let body: serde_json::Value = r.json().await.expect("json");
            (status, body)
        };
        // The first probe may log in; count the ones after it.
        let (status, body) = probe().await;
        assert_eq!(status, 200, "{kind:?}: {body}");
        let before = requests();
        for _ in 0..5 {
            let (status, body) = probe().await;
            assert_eq!(status, 200, "{kind:?}: {body}");
            assert_eq!(body["backends"]["ipam"]["ready"], true, "{kind:?}: {body}");
        }
        assert_eq!(
            requests() - before,
            5,
            "{kind:?}: one request per probe, not a listing"
        );
        lab.stop().await;
    }
}
