//! The native API's endpoints: from the request to the core and back.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::dto::*;
use super::errors::ApiResult;
use crate::contracts::ErrorBody;
use crate::contracts::input::{self, parse_json};
use crate::contracts::status::status_of;
use crate::domain::{Allocation, Family, IpamError, Lookup, Network, NetworkFilter, RecordChanges};
use crate::service::{Batch, BatchMode, Caller};
use crate::state::AppState;

pub(super) async fn list_networks(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let mut filter = NetworkFilter::default();
    for (k, v) in query_pairs(raw.as_deref()) {
        match k.as_str() {
            "family" => {
                filter.family = Some(Family::parse(&v).ok_or_else(|| {
                    IpamError::invalid("family", format!("'{v}' is not ipv4 or ipv6"))
                })?)
            }
            "address_space" => filter.address_space = Some(v),
            "tag" => {
                let (key, value) = v
                    .split_once('=')
                    .ok_or_else(|| IpamError::invalid("tag", format!("'{v}' is not key=value")))?;
                filter.tags.insert(key.to_owned(), value.to_owned());
            }
            other => {
                return Err(IpamError::invalid(
                    other,
                    "unknown filter (use family, address_space, tag)",
                )
                .into());
            }
        }
    }
    // Serialised straight from the cached snapshot: no clone of the networks, no JSON tree.
    let all = state.ipam.network_snapshot(&caller).await?;
    let networks: Vec<&Network> = all.iter().filter(|n| filter.matches(&n.info)).collect();
    Ok(Json(NetworkList { networks }).into_response())
}

pub(super) async fn get_network(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_network_id("id", &id)?;
    Ok(Json(state.ipam.network(&caller, &id).await?).into_response())
}

pub(super) async fn list_blocks(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Response> {
    Ok(Json(json!({ "blocks": state.ipam.blocks(&caller).await? })).into_response())
}

pub(super) async fn create_network(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let req: CreateNetwork = parse_json(&body)?;
    let block = parse_network_id("block", &req.block)?;
    let owner = input::owner("owner", &req.owner)?;
    let subnet = req
        .subnet
        .as_deref()
        .map(|s| {
            let net = s
                .parse::<ipnet::IpNet>()
                .map_err(|_| IpamError::invalid("subnet", format!("'{s}' is not a CIDR")))?;
            if net != net.trunc() {
                return Err(IpamError::invalid(
                    "subnet",
                    format!("'{s}' has host bits set; did you mean {}?", net.trunc()),
                ));
            }
            Ok(net)
        })
        .transpose()?;
    let net = state
        .ipam
        .allocate_network(&caller, &block, req.prefix_len, &owner, req.name, subnet)
        .await?;
    Ok((StatusCode::CREATED, Json(net)).into_response())
}

pub(super) async fn delete_network(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_network_id("id", &id)?;
    state.ipam.release_network(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn create_allocation(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let req = parse_json::<CreateAllocation>(&body)?.into_request("")?;
    let a = state.ipam.allocate(&caller, &req).await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

/// All or nothing: on failure everything taken is released again, and the error names the item.
pub(super) async fn create_batch(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let batch: CreateBatch = parse_json(&body)?;
    let mut plan = Batch::new(BatchMode::InOrder);
    for (i, a) in batch.allocations.into_iter().enumerate() {
        plan.push(a.into_request(&format!("allocations[{i}]."))?);
    }
    match state.ipam.run_batch(&caller, &plan).await {
        Ok(done) => Ok((
            StatusCode::CREATED,
            Json(json!({ "allocations": done.allocations() })),
        )
            .into_response()),
        Err(f) => {
            let status = status_of(&f.error);
            let mut body = ErrorBody::new(
                f.error.code(),
                format!(
                    "allocation {} failed, earlier ones were rolled back: {}",
                    f.index, f.error
                ),
            );
            body.error.index = Some(f.index);
            body.error.rollback_failures = Some(f.rollback.failures);
            Ok(body.into_response(status))
        }
    }
}

pub(super) async fn find_allocations(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<FoundAllocations>> {
    let pairs: BTreeMap<String, String> = query_pairs(raw.as_deref()).into_iter().collect();
    let lookup = match (pairs.get("owner"), pairs.get("address")) {
        (Some(o), None) => Lookup::Owner(input::owner("owner", o)?),
        (None, Some(a)) => Lookup::Address {
            address: input::ip("address", a)?,
            network: pairs
                .get("network")
                .map(|n| parse_network_id("network", n))
                .transpose()?
                .map(|n| n.backend_id()),
        },
        _ => {
            return Err(IpamError::invalid(
                "owner",
                "give exactly one of owner=… or address=… (optionally with network=…)",
            )
            .into());
        }
    };
    let allocations = state.ipam.find(&caller, &lookup).await?;
    Ok(Json(FoundAllocations { allocations }))
}

pub(super) async fn get_allocation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Allocation>> {
    let (net, addr) = parse_allocation_id(&id)?;
    Ok(Json(state.ipam.get(&caller, &net, addr).await?))
}

pub(super) async fn update_allocation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Allocation>> {
    let (net, addr) = parse_allocation_id(&id)?;
    let req: UpdateAllocation = parse_json(&body)?;
    let changes = RecordChanges {
        aliases: None,
        hostname: req.hostname,
        description: req.description,
        mac: req
            .mac
            .as_deref()
            .map(|m| input::mac("mac", m))
            .transpose()?,
    };
    if changes == RecordChanges::default() {
        return Err(
            IpamError::invalid("body", "nothing to change (hostname, description, mac)").into(),
        );
    }
    Ok(Json(
        state.ipam.update(&caller, &net, addr, &changes).await?,
    ))
}

pub(super) async fn release_allocation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (net, addr) = parse_allocation_id(&id)?;
    state.ipam.release(&caller, &net, addr).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn release_by_owner(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let pairs: BTreeMap<String, String> = query_pairs(raw.as_deref()).into_iter().collect();
    let owner = pairs
        .get("owner")
        .ok_or_else(|| IpamError::invalid("owner", "DELETE /api/v1/allocations needs ?owner=…"))?;
    let released = state
        .ipam
        .release_owner(&caller, &input::owner("owner", owner)?)
        .await?;
    Ok(Json(json!({ "released": released })))
}
