//! The vRA 8 / Aria Automation IPAM contract.
//!
//! vRA calls one ABX action per operation; the generated shims (`ipam-gateway package vra`) post
//! the action's `inputs` dict to `POST /vra/v1/<operation>` and return the JSON they get back. So
//! every operation here takes exactly what vRA hands the action and answers exactly what the
//! action must return. Failures come back as `{"error": {…}}` with a non-2xx status, and the shim
//! raises with the message (see [`errors`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::post;
use axum::{Extension, Router};
use moka::future::Cache;

use crate::auth::gate::Protected;
use crate::domain::{Block, IpamError, Network};

mod allocate;
mod discovery;
pub mod dto;
mod endpoint;
pub mod errors;
mod paging;
mod ranges;
mod release;
mod request;
mod update;

/// The operations, in the order vRA's SDK lists them, with their action-id suffix and the file
/// stem the SDK gives their `.abx`/`.zip` pair.
pub const OPERATIONS: [Operation; 8] = [
    Operation::new(
        "allocate-ip",
        "AllocateIP",
        "allocate_ip",
        "allocateIPActionId",
    ),
    Operation::new(
        "deallocate-ip",
        "DeallocateIP",
        "deallocate_ip",
        "deallocateIPActionId",
    ),
    Operation::new(
        "validate-endpoint",
        "ValidateEndpoint",
        "validate_endpoint",
        "validateEndpointActionId",
    ),
    Operation::new(
        "update-record",
        "Update",
        "update_record",
        "updateResourceActionId",
    ),
    Operation::new(
        "get-ip-ranges",
        "GetIPRanges",
        "get_ip_ranges",
        "getIPRangesActionId",
    ),
    Operation::new(
        "allocate-ip-range",
        "AllocateIPRange",
        "allocate_ip_range",
        "allocateNetworkActionId",
    ),
    Operation::new(
        "deallocate-ip-range",
        "DeallocateIPRange",
        "deallocate_ip_range",
        "deallocateNetworkActionId",
    ),
    Operation::new(
        "get-ip-blocks",
        "GetIPBlocks",
        "get_ip_blocks",
        "getIPBlocksActionId",
    ),
];

/// One vRA IPAM operation: its gateway path segment and its names in a provider package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// `POST /vra/v1/<path>`.
    pub path: &'static str,
    /// The action is `<provider>_<suffix>`.
    pub action_suffix: &'static str,
    /// `bundle.zip` holds `<file_stem>.abx` and `<file_stem>.zip`.
    pub file_stem: &'static str,
    /// The key of the action id in `registration.yaml`'s `abxConfig`.
    pub registration_key: &'static str,
}

impl Operation {
    const fn new(
        path: &'static str,
        action_suffix: &'static str,
        file_stem: &'static str,
        registration_key: &'static str,
    ) -> Self {
        Operation {
            path,
            action_suffix,
            file_stem,
            registration_key,
        }
    }
}

/// How long a page token keeps its snapshot after the last page was read with it.
const PAGE_TOKEN_IDLE: Duration = Duration::from_secs(15 * 60);

/// A listing frozen at the first page of an enumeration, so that later pages read the same list
/// while the network cache refreshes underneath: no duplicates, no gaps.
#[derive(Debug)]
pub(crate) struct PagedSnapshot {
    /// `backend|client`: a token only serves the caller it was issued to.
    pub caller: String,
    pub listing: Listing,
    /// The discovery filter of the first page (later pages keep it, so offsets stay valid).
    pub filter: endpoint::DiscoveryFilter,
}

#[derive(Debug)]
pub(crate) enum Listing {
    Ranges(Arc<Vec<Network>>),
    Blocks(Arc<Vec<Block>>),
}

/// State of the vRA contract, next to the shared [`AppState`](crate::state::AppState).
#[derive(Clone)]
pub struct VraState {
    pub(crate) pages: Cache<String, Arc<PagedSnapshot>>,
}

impl Default for VraState {
    fn default() -> Self {
        VraState {
            pages: Cache::builder()
                .name("vra_page_tokens")
                .max_capacity(10_000)
                .time_to_idle(PAGE_TOKEN_IDLE)
                .build(),
        }
    }
}

impl std::fmt::Debug for VraState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VraState")
            .field("page_tokens", &self.pages.entry_count())
            .finish()
    }
}

/// `POST /vra/v1/<operation>` for the eight operations. Served through `auth::gate::protect` (it cannot be served otherwise).
pub fn router() -> Router<Protected> {
    Router::new()
        .route(
            "/vra/v1/validate-endpoint",
            post(endpoint::validate_endpoint),
        )
        .route("/vra/v1/get-ip-ranges", post(discovery::get_ip_ranges))
        .route("/vra/v1/get-ip-blocks", post(discovery::get_ip_blocks))
        .route("/vra/v1/allocate-ip", post(allocate::allocate_ip))
        .route("/vra/v1/deallocate-ip", post(release::deallocate_ip))
        .route("/vra/v1/update-record", post(update::update_record))
        .route("/vra/v1/allocate-ip-range", post(ranges::allocate_ip_range))
        .route(
            "/vra/v1/deallocate-ip-range",
            post(ranges::deallocate_ip_range),
        )
        .route("/vra/v1/{operation}", post(unknown_operation))
        .layer(Extension(VraState::default()))
}

async fn unknown_operation(Path(operation): Path<String>) -> errors::VraError {
    let known: Vec<&str> = OPERATIONS.iter().map(|o| o.path).collect();
    errors::VraError::new(
        "vra",
        IpamError::NotFound(format!(
            "no vRA operation '{operation}' (known: {})",
            known.join(", ")
        )),
    )
}
