//! The HTTP status of a domain error, the same for every contract.

use axum::http::StatusCode;

use crate::domain::IpamError;

pub fn status_of(e: &IpamError) -> StatusCode {
    match e {
        IpamError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
        IpamError::NotFound(_) => StatusCode::NOT_FOUND,
        IpamError::Exhausted(_) | IpamError::Conflict(_) => StatusCode::CONFLICT,
        IpamError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        // The backend refused the gateway's own credentials: a gateway-side problem, not the caller's.
        // An answer the gateway cannot read is the backend's fault too.
        IpamError::Unauthorized(_)
        | IpamError::Upstream { .. }
        | IpamError::Undecodable { .. }
        | IpamError::NotSetUp { .. } => StatusCode::BAD_GATEWAY,
        IpamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        IpamError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        IpamError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
