//! Discovery: Get IP Ranges and Get IP Blocks, filtered by the endpoint's options and paged over
//! a frozen snapshot (see [`super::paging`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::dto::{IpBlock, IpRangeOut};
use super::endpoint::endpoint_options;
use super::errors::{VraError, op};
use super::paging::{ListingKind, caller_key, cut_page, page_source, paging};
use super::request::{VraResult, parse_body};
use super::{Listing, PagedSnapshot, VraState};
use crate::contracts::input::Field;
use crate::domain::{IpamError, Network};
use crate::service::Caller;
use crate::state::AppState;

/// Get IP Ranges: the networks the endpoint's filter lets through, a page at a time.
pub(super) async fn get_ip_ranges(
    State(state): State<AppState>,
    caller: Caller,
    Extension(vra): Extension<VraState>,
    body: Bytes,
) -> Result<Response, VraError> {
    const OP: &str = "get-ip-ranges";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    let options = endpoint_options(&root, &caller).map_err(op(OP))?;
    let paging = paging(&root).map_err(op(OP))?;
    let ipam = state.ipam.clone();
    let fresh = async {
        Ok(PagedSnapshot {
            caller: caller_key(&caller),
            listing: Listing::Ranges(ipam.network_snapshot(&caller).await?),
            filter: options.filter.clone(),
        })
    };
    let (id, snap, start) = page_source(&vra, &caller, &paging, ListingKind::Ranges, fresh)
        .await
        .map_err(op(OP))?;
    // Page over references into the snapshot and convert only the page: a page of 1,000 out of
    // 10,000 networks no longer builds 10,000 `IpRange`s nor a JSON tree of the page.
    let items: Vec<&Network> = match &snap.listing {
        Listing::Ranges(nets) => nets
            .iter()
            .filter(|n| snap.filter.matches_network(n))
            .collect(),
        Listing::Blocks(_) => Vec::new(),
    };
    let (page, next) = cut_page(&vra, id, snap.clone(), items, start, paging.max, |n| {
        n.id.to_string()
    })
    .await
    .map_err(op(OP))?;
    let hint = page.len().saturating_mul(RANGE_JSON_BYTES) + 256;
    let answer = RangesPage {
        ip_ranges: page.into_iter().map(IpRangeOut).collect(),
        next_page_token: next,
    };
    json_answer(OP, &answer, hint)
}

/// About what one range takes in JSON (445 KiB for 1,000 ranges with DNS, tags and properties).
const RANGE_JSON_BYTES: usize = 480;

/// Serialises an answer into one buffer sized up front. `Json` grows its buffer by doubling from
/// 128 bytes: for a listing of thousands of ranges the profile showed the time going to realloc,
/// copying and malloc consolidation rather than to encoding.
fn json_answer<T: serde::Serialize>(
    operation: &'static str,
    value: &T,
    hint: usize,
) -> Result<Response, VraError> {
    let mut buf = Vec::with_capacity(hint);
    serde_json::to_writer(&mut buf, value).map_err(|e| {
        VraError::new(
            operation,
            IpamError::Internal(format!("cannot encode the answer: {e}")),
        )
    })?;
    Ok((
        [(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )],
        buf,
    )
        .into_response())
}

/// The answer of Get IP Ranges, serialised as it stands (no `serde_json::Value` in between).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RangesPage<'a> {
    /// Serialised straight from the snapshot: no `IpRange` per range (see [`IpRangeOut`]).
    ip_ranges: Vec<IpRangeOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// Get IP Blocks: the blocks on-demand networks are carved from, a page at a time.
pub(super) async fn get_ip_blocks(
    State(state): State<AppState>,
    caller: Caller,
    Extension(vra): Extension<VraState>,
    body: Bytes,
) -> VraResult {
    const OP: &str = "get-ip-blocks";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    let options = endpoint_options(&root, &caller).map_err(op(OP))?;
    let paging = paging(&root).map_err(op(OP))?;
    let ipam = state.ipam.clone();
    let fresh = async {
        // vRA runs Get IP Blocks even when on-demand networks are not used, and skips Get IP
        // Ranges when it fails: a backend without blocks answers an empty list, not an error.
        let blocks = match ipam.blocks(&caller).await {
            // Sorted by id: a page token may continue after the last id on another replica.
            Ok(mut b) => {
                b.sort_by(|x, y| x.id.cmp(&y.id));
                b
            }
            Err(IpamError::Unsupported(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(PagedSnapshot {
            caller: caller_key(&caller),
            listing: Listing::Blocks(Arc::new(blocks)),
            filter: options.filter.clone(),
        })
    };
    let (id, snap, start) = page_source(&vra, &caller, &paging, ListingKind::Blocks, fresh)
        .await
        .map_err(op(OP))?;
    let items: Vec<IpBlock> = match &snap.listing {
        Listing::Blocks(blocks) => blocks
            .iter()
            .filter(|b| snap.filter.matches_block(b))
            .map(IpBlock::from_block)
            .collect(),
        Listing::Ranges(_) => Vec::new(),
    };
    let (page, next) = cut_page(&vra, id, snap.clone(), items, start, paging.max, |b| {
        b.id.clone()
    })
    .await
    .map_err(op(OP))?;
    let mut out = json!({ "ipBlocks": page });
    if let Some(t) = next {
        out["nextPageToken"] = json!(t);
    }
    Ok(Json(out))
}
