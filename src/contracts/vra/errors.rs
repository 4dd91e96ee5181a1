//! The vRA contract's error envelope.
//!
//! vRA itself has no error shape any more: an ABX action reports failure by raising (contract
//! p.7-8). So the gateway answers a failed operation with a non-2xx status and
//! `{"error": {"code", "message", "operation", "field"?}}`, and the shim raises an exception whose
//! text is `message`: what failed, where (which allocation, which range) and why.

use axum::response::{IntoResponse, Response};

use crate::contracts::ErrorBody;
use crate::contracts::status::status_of;
use crate::domain::IpamError;

#[derive(Debug)]
pub struct VraError {
    pub operation: &'static str,
    pub error: IpamError,
    /// What was being done, e.g. `ipAllocations[1] (id "a2")`; prefixed to the message.
    pub context: Option<String>,
    /// What happened next, e.g. the rollback; appended to the message.
    pub note: Option<String>,
}

impl VraError {
    pub fn new(operation: &'static str, error: IpamError) -> Self {
        VraError {
            operation,
            error,
            context: None,
            note: None,
        }
    }

    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    pub fn message(&self) -> String {
        crate::contracts::failure_message(
            self.operation,
            self.context.as_deref(),
            &self.error,
            self.note.as_deref(),
        )
    }
}

impl IntoResponse for VraError {
    fn into_response(self) -> Response {
        let status = status_of(&self.error);
        let message = self.message();
        if status.is_server_error() {
            tracing::warn!(operation = self.operation, error = %message, "vRA operation failed");
        } else {
            tracing::info!(operation = self.operation, error = %message, "vRA operation refused");
        }
        let mut body = ErrorBody::of(&self.error, message);
        body.error.operation = Some(self.operation.to_owned());
        body.into_response(status)
    }
}

/// Attaches the operation name to core errors: `.map_err(op("allocate-ip"))`.
pub fn op(operation: &'static str) -> impl Fn(IpamError) -> VraError {
    move |e| VraError::new(operation, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[tokio::test]
    async fn an_unreadable_backend_answer_is_a_502_naming_the_operation() {
        let e = op("allocate-ip")(IpamError::Undecodable {
            backend: "ipam".into(),
            detail: "unexpected first_free answer: no address".into(),
        })
        .with_context("ipAllocations[0] (id \"a1\")");
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "upstream");
        assert_eq!(body["error"]["operation"], "allocate-ip");
        assert_eq!(
            body["error"]["message"],
            "allocate-ip: ipAllocations[0] (id \"a1\"): backend ipam answered with something \
             the gateway cannot read: unexpected first_free answer: no address"
        );
    }
}
