//! The error envelope every JSON answer of the gateway uses: `{"error": {"code", "message",
//! "field"?, …}}`. The native API and the HTTP edge send the three common members; vRA adds
//! `operation`, Avi (IPAM and DNS) `exception` and `function`, a failed native batch `index` and
//! `rollback_failures`. The shims read `message` (and Avi's `exception`).
//!
//! Members are declared in alphabetical order: serde_json writes objects built with `json!`
//! with sorted keys (no `preserve_order`), so this type writes the very text the hand-built
//! bodies did.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::domain::IpamError;

/// `{"error": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`]. Optional members are left out when `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `invalid_input`, `not_found`, `unauthorized`, … ([`IpamError::code`] for domain errors).
    pub code: String,
    /// Avi: the exception class the script raises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
    /// The input field at fault, for invalid input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Avi: the function that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Native batch: the item that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub message: String,
    /// vRA: the operation that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Native batch: what the rollback could not release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_failures: Option<Vec<String>>,
}

impl ErrorBody {
    /// A body with a code and a message only.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                exception: None,
                field: None,
                function: None,
                index: None,
                message: message.into(),
                operation: None,
                rollback_failures: None,
            },
        }
    }

    /// The body of a domain error: its code, `message`, and its field when it is invalid input.
    pub fn of(error: &IpamError, message: impl Into<String>) -> Self {
        let mut body = Self::new(error.code(), message);
        if let IpamError::InvalidInput { field, .. } = error {
            body.error.field = Some(field.clone());
        }
        body
    }

    pub fn with_field(mut self, field: Option<String>) -> Self {
        self.error.field = field;
        self
    }

    /// The answer: `status` with this body as JSON.
    pub fn into_response(self, status: StatusCode) -> Response {
        (status, Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_the_text_the_hand_built_bodies_wrote() {
        let mut b = ErrorBody::of(&IpamError::invalid("owner", "is required"), "bad owner");
        b.error.operation = Some("allocate-ip".into());
        let hand = json!({"error": {
            "code": "invalid_input", "message": "bad owner", "operation": "allocate-ip",
            "field": "owner",
        }});
        assert_eq!(
            serde_json::to_string(&b).expect("json"),
            serde_json::to_string(&hand).expect("json")
        );
        let mut b = ErrorBody::new("conflict", "m");
        b.error.exception = Some("E".into());
        b.error.function = Some("F".into());
        b.error.index = Some(2);
        b.error.rollback_failures = Some(vec!["x".into()]);
        let hand = json!({"error": {"exception": "E", "code": "conflict", "message": "m",
            "function": "F", "index": 2, "rollback_failures": ["x"]}});
        assert_eq!(
            serde_json::to_string(&b).expect("json"),
            serde_json::to_string(&hand).expect("json")
        );
        let plain = ErrorBody::of(&IpamError::NotFound("x".into()), "x");
        assert_eq!(
            serde_json::to_value(&plain).expect("json"),
            json!({"error": {"code": "not_found", "message": "x"}}),
            "no field unless the input was invalid"
        );
    }
}
