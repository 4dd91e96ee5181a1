//! Allocate IP Range / Deallocate IP Range: on-demand networks carved from blocks.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::json;

use super::dto::IpRange;
use super::endpoint::endpoint_options;
use super::errors::{VraError, op};
use super::request::{VraResult, owner, owner_base, parse_body, parse_id};
use crate::contracts::input::Field;
use crate::domain::IpamError;
use crate::service::Caller;
use crate::state::AppState;

/// Allocate IP Range: a network carved for the resource from the first block that fits.
pub(super) async fn allocate_ip_range(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "allocate-ip-range";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    endpoint_options(&root, &caller).map_err(op(OP))?;
    let ra = root.get("ipRangeAllocation");
    if !ra.is_object() {
        return Err(VraError::new(
            OP,
            IpamError::invalid(ra.path(), "is required (an object)"),
        ));
    }
    let parse = || -> Result<_, IpamError> {
        let rid = match root.get("resourceInfo").get("id").opt_str()? {
            Some(r) => r,
            None => ra.get("id").opt_str()?.ok_or_else(|| {
                IpamError::invalid(
                    "resourceInfo.id",
                    "is required: it names the network, so that a retried request gets the same one",
                )
            })?,
        };
        let owner = owner("resourceInfo.id", owner_base(&rid))?;
        let blocks_field = ra.get("ipBlockIds");
        let block_ids = blocks_field
            .str_list()?
            .iter()
            .enumerate()
            .map(|(j, t)| {
                parse_id(
                    &format!("{}[{j}]", blocks_field.path()),
                    t,
                    "a block",
                    "Get IP Blocks",
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if block_ids.is_empty() {
            return Err(IpamError::invalid(
                blocks_field.path(),
                "at least one block id is required",
            ));
        }
        let subnet_field = ra.get("subnetCidr");
        let subnet = subnet_field
            .opt_str()?
            .map(|s| {
                let net: ipnet::IpNet = s.parse().map_err(|_| {
                    IpamError::invalid(subnet_field.path(), format!("'{s}' is not a CIDR"))
                })?;
                if net != net.trunc() {
                    return Err(IpamError::invalid(
                        subnet_field.path(),
                        format!("'{s}' has host bits set; did you mean {}?", net.trunc()),
                    ));
                }
                Ok(net)
            })
            .transpose()?;
        let prefix_field = ra.get("subnetPrefixLength");
        let prefix = match (prefix_field.opt_u64()?, subnet) {
            (Some(p), Some(s)) if p != u64::from(s.prefix_len()) => {
                return Err(IpamError::invalid(
                    prefix_field.path(),
                    format!("/{p} does not match subnetCidr {s}"),
                ));
            }
            (Some(p), _) => p,
            (None, Some(s)) => u64::from(s.prefix_len()),
            (None, None) => {
                return Err(IpamError::invalid(
                    prefix_field.path(),
                    "is required (or give subnetCidr)",
                ));
            }
        };
        let prefix = u8::try_from(prefix)
            .ok()
            .filter(|p| *p <= 128)
            .ok_or_else(|| {
                IpamError::invalid(
                    prefix_field.path(),
                    format!("/{prefix} is not a prefix length"),
                )
            })?;
        let name = ra.get("name").opt_str()?;
        Ok((owner, block_ids, subnet, prefix, name))
    };
    let (owner, block_ids, subnet, prefix, name) = parse().map_err(op(OP))?;
    let blocks = state.ipam.blocks(&caller).await.map_err(op(OP))?;

    let mut last_error: Option<IpamError> = None;
    let mut tried = Vec::new();
    for block_id in &block_ids {
        let block = blocks.iter().find(|b| &b.id == block_id);
        if let (Some(s), Some(b)) = (subnet, block)
            && !b.info.cidr.contains(&s)
        {
            continue;
        }
        tried.push(match block {
            Some(b) => format!("{} ({})", b.info.name, b.info.cidr),
            None => block_id.to_string(),
        });
        match state
            .ipam
            .allocate_network(&caller, block_id, prefix, &owner, name.clone(), subnet)
            .await
        {
            Ok(net) => {
                let mut range = IpRange::from_network(&net);
                overlay_requested_dns(&mut range, &ra).map_err(op(OP))?;
                tracing::info!(network = %net.id, cidr = %net.info.cidr, owner = %owner,
                    "vRA on-demand network allocated");
                return Ok(Json(json!({ "ipRange": range })));
            }
            Err(
                e @ (IpamError::Exhausted(_) | IpamError::Conflict(_) | IpamError::NotFound(_)),
            ) => {
                last_error = Some(e);
            }
            Err(e) => {
                return Err(VraError::new(OP, e).with_context(format!(
                    "block {}",
                    tried.last().map(String::as_str).unwrap_or_default()
                )));
            }
        }
    }
    let error = match (last_error, subnet) {
        (Some(e), _) => e,
        (None, Some(s)) => IpamError::invalid(
            "ipRangeAllocation.subnetCidr",
            format!("{s} is not inside any of the given blocks"),
        ),
        (None, None) => IpamError::NotFound("none of the given blocks exists".into()),
    };
    Err(VraError::new(OP, error).with_context(format!(
        "a /{prefix} from block(s) {}",
        if tried.is_empty() {
            block_ids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            tried.join(", ")
        }
    )))
}

/// DNS settings the request carries fill in what the carved network does not have.
fn overlay_requested_dns(range: &mut IpRange, ra: &Field<'_>) -> Result<(), IpamError> {
    if range.dns_server_addresses.is_empty() {
        range.dns_server_addresses = ra.get("dnsServerAddresses").str_list()?;
    }
    if range.domain.is_none() {
        range.domain = ra.get("domain").opt_str()?;
    }
    if range.dns_search_domains.is_empty() {
        range.dns_search_domains = ra.get("dnsSearchDomains").str_list()?;
    }
    Ok(())
}

/// Deallocate IP Range: deletes a carved network (already gone is fine).
pub(super) async fn deallocate_ip_range(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "deallocate-ip-range";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    endpoint_options(&root, &caller).map_err(op(OP))?;
    let rd = root.get("ipRangeDeallocation");
    let id_field = rd.get("ipRangeId");
    let network = id_field
        .req_str()
        .and_then(|t| parse_id(id_field.path(), &t, "a range", "Allocate IP Range"))
        .map_err(op(OP))?;
    state
        .ipam
        .release_network(&caller, &network)
        .await
        .map_err(|e| VraError::new(OP, e).with_context(format!("range {network}")))?;
    tracing::info!(network = %network, "vRA on-demand network released");
    Ok(Json(json!({
        "message": format!("Successfully deallocated {network}"),
    })))
}
