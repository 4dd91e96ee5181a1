//! TestLogin: the backend answers and its set-up is complete.

use axum::body::Bytes;
use axum::extract::State;
use serde_json::json;

use super::errors::AviError;
use super::request::{AviResult, answer, check_backend, parse_body};
use crate::service::Caller;
use crate::state::AppState;

pub(super) async fn test_login(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> AviResult {
    const F: &str = "TestLogin";
    // The script sends `{"auth_params": {...}}`; an empty body is fine here.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(F, &body)?
    };
    check_backend(F, &body, &caller)?;
    let status = state.ipam.check(&caller.backend).await.map_err(|e| {
        AviError::from_core(F, e).with_context(format!("backend '{}'", caller.backend))
    })?;
    tracing::info!(client = %caller.name, backend = %status.backend, networks = status.networks,
        "Avi TestLogin passed");
    answer(true)
}
