//! The native API's error envelope: `{"error": {"code", "message", "field"?}}`.

use axum::response::{IntoResponse, Response};

use crate::contracts::ErrorBody;
use crate::contracts::status::status_of;
use crate::domain::IpamError;

#[derive(Debug)]
pub struct ApiError(pub IpamError);

impl From<IpamError> for ApiError {
    fn from(e: IpamError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "request failed");
        }
        ErrorBody::of(&self.0, self.0.to_string()).into_response(status)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    /// What a backend's unreadable answer (`bad_data`, a 200 that is not JSON) looks like to a
    /// native API caller: 502 as when it posed as `Upstream { status: 200 }`, the same code, and
    /// a message that says the answer could not be read instead of "answered 200".
    #[tokio::test]
    async fn an_unreadable_backend_answer_is_a_502_that_says_so() {
        let e = IpamError::Undecodable {
            backend: "ipam".into(),
            detail: "unexpected section list: invalid type".into(),
        };
        assert_eq!(status_of(&e), StatusCode::BAD_GATEWAY);
        assert_eq!(e.code(), "upstream");
        let response = ApiError(e).into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "upstream");
        assert_eq!(
            body["error"]["message"],
            "backend ipam answered with something the gateway cannot read: \
             unexpected section list: invalid type"
        );
        assert!(body["error"].get("field").is_none(), "{body}");
    }
}
