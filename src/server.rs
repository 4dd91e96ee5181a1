//! HTTP edge: router, middleware, health, metrics. Authentication is `auth::gate`.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::auth::gate;
use crate::contracts::ErrorBody;
use crate::state::AppState;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router: health (open), native API (authenticated).
pub fn router(state: AppState, request_timeout: Duration, body_limit: usize) -> Router {
    let contracts = crate::contracts::native::router()
        .merge(crate::contracts::vra::router())
        .merge(crate::contracts::avi::router())
        .merge(crate::contracts::avi_dns::router());
    let protected =
        gate::protect(contracts, state.clone()).route_layer(middleware::from_fn(run_to_completion));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(protected)
        .fallback(not_found)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request| {
                        let route = req
                            .extensions()
                            .get::<MatchedPath>()
                            .map(MatchedPath::as_str)
                            .unwrap_or("unmatched");
                        let id = req
                            .headers()
                            .get(&REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!("request", method = %req.method(), route, request_id = id)
                    })
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(middleware::from_fn(record_metrics))
                .layer(CatchPanicLayer::custom(|_| {
                    ErrorBody::new("internal", "internal error")
                        .into_response(StatusCode::INTERNAL_SERVER_ERROR)
                }))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    request_timeout,
                ))
                .layer(RequestBodyLimitLayer::new(body_limit)),
        )
}

async fn not_found() -> Response {
    ErrorBody::new("not_found", "no such endpoint").into_response(StatusCode::NOT_FOUND)
}

/// Runs an API request on its own task. A caller that hangs up, or the request timeout, then
/// cannot cancel a change half-way: a batch either completes or rolls back, and a retry finds what
/// was taken through the owner lookup.
async fn run_to_completion(req: Request, next: Next) -> Response {
    match tokio::spawn(next.run(req)).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            ErrorBody::new("internal", "internal error")
                .into_response(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("ipamgw_http_requests_total",
        "route" => route.clone(), "method" => method.clone(), "status" => status.clone())
    .increment(1);
    metrics::histogram!("ipamgw_http_request_duration_seconds",
        "route" => route, "method" => method, "status" => status)
    .record(started.elapsed().as_secs_f64());
    resp
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when every backend answers its check within the backend timeout.
async fn readyz(State(state): State<AppState>) -> Response {
    let mut ready = true;
    let mut report = serde_json::Map::new();
    for name in state.ipam.backend_names() {
        let outcome = tokio::time::timeout(state.backend_timeout, state.ipam.ping(name)).await;
        let entry = match outcome {
            Ok(Ok(kind)) => json!({"ready": true, "kind": kind}),
            Ok(Err(e)) => {
                ready = false;
                json!({"ready": false, "error": e.to_string()})
            }
            Err(_) => {
                ready = false;
                json!({"ready": false, "error": format!("no answer within {}s", state.backend_timeout.as_secs())})
            }
        };
        report.insert(name.to_owned(), entry);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready, "backends": report}))).into_response()
}

/// The metrics listener's router: `GET /metrics` in Prometheus text format.
pub fn metrics_router(handle: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let h = handle.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    h.render(),
                )
            }
        }),
    )
}
