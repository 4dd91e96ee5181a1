//! The authentication gate: the only way a request handler gets a [`Caller`].
//!
//! # What the types enforce
//!
//! A handler names its caller by taking a [`Caller`] argument; [`Caller`] is an extractor for
//! one router state only, [`Protected`] (`impl FromRequestParts<Protected> for Caller`, and no
//! other). So:
//!
//! - a handler that takes a [`Caller`] is an axum handler only on a `Router<Protected>`: put on
//!   the application's `Router<AppState>` (merged outside authentication) it does not compile,
//!   where before an `Extension<Caller>` missing at run time was a 500;
//! - a `Router<Protected>` cannot be served until it is given a [`Protected`] value
//!   (`Router::with_state`), and one can only be built in this module (its field is private),
//!   by [`protect`], which puts the authentication layer on every route of that router in the
//!   same step. Every route that reads a [`Caller`] therefore runs behind [`require_auth`];
//! - the caller travels from the layer to the extractor in a request extension of a type
//!   private to this module, so no `Extension<…>` elsewhere can read or forge it.
//!
//! Handlers still read the shared [`AppState`] with `State<AppState>` (`AppState: FromRef<Protected>`).
//!
//! What is not enforced: a route that takes no [`Caller`] compiles anywhere (`/healthz`,
//! `/readyz` are meant to be open; a new route that should be closed must take a `Caller` to be
//! held to this); and a handler already behind the gate could extract `State<Protected>` (axum
//! implements `FromRef<T> for T` for every state) and use that value to serve another router
//! without the layer — possible in code review only, never by accident. A [`Caller`] is still an
//! ordinary value for code that is not a request handler (the service, tests, benches build
//! them): the gate decides who may *extract* one from a request.
//!
//! ```
//! use axum::{Router, routing::get};
//! use ipam_gateway::auth::gate::Protected;
//! use ipam_gateway::service::Caller;
//!
//! async fn whoami(caller: Caller) -> String {
//!     caller.name
//! }
//! let routes: Router<Protected> = Router::new().route("/whoami", get(whoami));
//! ```
//!
//! The same handler on the application's router, outside the gate, does not compile:
//!
//! ```compile_fail
//! use axum::{Router, routing::get};
//! use ipam_gateway::service::Caller;
//! use ipam_gateway::state::AppState;
//!
//! async fn whoami(caller: Caller) -> String {
//!     caller.name
//! }
//! let open: Router<AppState> = Router::new().route("/whoami", get(whoami));
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;

use super::AuthError;
use crate::contracts::ErrorBody;
use crate::service::Caller;
use crate::state::AppState;

/// The state of routes that run only behind authentication. Built only by [`protect`].
#[derive(Clone)]
pub struct Protected {
    app: AppState,
}

impl FromRef<Protected> for AppState {
    fn from_ref(p: &Protected) -> AppState {
        p.app.clone()
    }
}

/// The caller [`require_auth`] authenticated, as it travels to the extractor. Private: only this
/// module puts one into a request or reads it.
#[derive(Clone)]
struct Authenticated(Caller);

/// Puts authentication in front of every route of `routes` and gives them their state: the only
/// way to serve a `Router<Protected>`.
pub fn protect(routes: Router<Protected>, state: AppState) -> Router<AppState> {
    routes
        .route_layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .with_state(Protected { app: state })
}

impl FromRequestParts<Protected> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &Protected) -> Result<Self, Response> {
        match parts.extensions.get::<Authenticated>() {
            Some(Authenticated(caller)) => Ok(caller.clone()),
            // Only a router given its `Protected` state without the layer, which `protect`
            // never does.
            None => {
                tracing::error!("a protected route ran without the authentication layer");
                Err(ErrorBody::new("internal", "internal error")
                    .into_response(StatusCode::INTERNAL_SERVER_ERROR))
            }
        }
    }
}

/// Authenticates the request (HTTP Basic: a configured client, or a passthrough user checked by
/// the backend), with per-address throttling of failures; on success hands the [`Caller`] on.
async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // The peer address, when the server was started with connect info (it always is in
    // `Application`); behind a proxy that is the proxy's address.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let limiter = state.auth.limiter().zip(peer);
    if let Some((limiter, ip)) = limiter
        && let Some(left) = limiter.blocked_for(ip).await
    {
        return too_many_failures(left);
    }
    match state
        .auth
        .authenticate(req.headers().get(header::AUTHORIZATION), &state.ipam)
        .await
    {
        Ok(caller) => {
            tracing::debug!(client = %caller.name, backend = %caller.backend, "authenticated");
            req.extensions_mut().insert(Authenticated(caller));
            next.run(req).await
        }
        Err(e) => {
            // Wrong or garbled credentials count; a missing header (the Basic challenge's first
            // step) and an unreachable verifier do not.
            if matches!(e, AuthError::Invalid | AuthError::Malformed(_))
                && let Some((limiter, ip)) = limiter
                && let Some(block) = limiter.record_failure(ip).await
            {
                tracing::warn!(client_address = %ip, block_secs = block.as_secs(),
                    "too many failed authentications; address blocked");
            }
            unauthorized(&e)
        }
    }
}

fn too_many_failures(left: Duration) -> Response {
    // Round up so a client that waits exactly Retry-After is let in.
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let mut resp = ErrorBody::new(
        "too_many_failed_authentications",
        format!("too many failed authentications from this address; retry in {secs}s"),
    )
    .into_response(StatusCode::TOO_MANY_REQUESTS);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

fn unauthorized(e: &AuthError) -> Response {
    let status = match e {
        AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    tracing::info!(reason = %e, "request not authenticated");
    let mut resp = ErrorBody::new("unauthorized", e.to_string()).into_response(status);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"ipam-gateway\", charset=\"UTF-8\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;
    use crate::auth::Authenticator;
    use crate::config::{DEFAULT_CONFIG, Settings};
    use crate::service::Ipam;

    fn app_state() -> AppState {
        let settings = Settings::from_toml(DEFAULT_CONFIG).expect("default config");
        AppState {
            ipam: Arc::new(Ipam::new(Vec::new(), Duration::from_secs(60))),
            auth: Arc::new(Authenticator::new(&settings)),
            backend_timeout: Duration::from_secs(1),
        }
    }

    async fn whoami(caller: Caller) -> String {
        caller.name
    }

    async fn answer(router: Router<AppState>, auth: Option<&str>) -> (StatusCode, Response) {
        let mut req = Request::builder().uri("/whoami");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = router
            .with_state(app_state())
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        (resp.status(), resp)
    }

    async fn error_code(resp: Response) -> String {
        let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
            .await
            .expect("body");
        let body: ErrorBody = serde_json::from_slice(&body).expect("error body");
        body.error.code
    }

    #[tokio::test]
    async fn a_protected_route_answers_401_without_credentials_and_never_runs() {
        let routes: Router<Protected> = Router::new().route("/whoami", get(whoami));
        let (status, resp) = answer(protect(routes, app_state()), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(error_code(resp).await, "unauthorized");
    }

    /// The one way to reach the extractor without the layer, possible only inside this module:
    /// a clear 500, not a panic and not an anonymous caller.
    #[tokio::test]
    async fn a_caller_without_the_layer_is_a_500_not_a_caller() {
        let routes: Router<Protected> = Router::new().route("/whoami", get(whoami));
        let skipped: Router<AppState> = routes.with_state(Protected { app: app_state() });
        let (status, resp) = answer(skipped, Some("Basic ZGVtbzpkZW1v")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error_code(resp).await, "internal");
    }
}
