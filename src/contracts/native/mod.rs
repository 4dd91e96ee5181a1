//! The native API: small JSON endpoints under `/api/v1/` that exercise the whole core without a
//! vendor contract, a contract beside vRA and Avi. Documented in the README.
//!
//! Errors are `{"error": {"code", "message", "field"?}}` ([`errors::ApiError`]); a failed batch
//! adds `index` and `rollback_failures`.

use axum::Router;
use axum::routing::{get, post};

use crate::auth::gate::Protected;

pub mod dto;
pub mod errors;
pub mod handlers;

use handlers::*;

/// `/api/v1/…`. Served through `auth::gate::protect` (it cannot be served otherwise).
pub fn router() -> Router<Protected> {
    Router::new()
        .route("/api/v1/networks", get(list_networks).post(create_network))
        .route(
            "/api/v1/networks/{id}",
            get(get_network).delete(delete_network),
        )
        .route("/api/v1/blocks", get(list_blocks))
        .route(
            "/api/v1/allocations",
            get(find_allocations)
                .post(create_allocation)
                .delete(release_by_owner),
        )
        .route("/api/v1/allocations/batch", post(create_batch))
        .route(
            "/api/v1/allocations/{id}",
            get(get_allocation)
                .patch(update_allocation)
                .delete(release_allocation),
        )
}
