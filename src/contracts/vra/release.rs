//! Deallocate IP: every item checked before anything is released; an address another owner holds
//! by now is left in place (and said so).

use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::json;

use super::dto::DeallocationResult;
use super::endpoint::endpoint_options;
use super::errors::{VraError, op};
use super::request::{VraResult, owned_by, owner_base, parse_body, parse_id, parse_ip};
use crate::contracts::input::Field;
use crate::domain::{IpamError, Lookup, NetworkId, Owner};
use crate::service::Caller;
use crate::state::AppState;

/// Deallocate IP: each address given back, unless someone else holds it by now.
pub(super) async fn deallocate_ip(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "deallocate-ip";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    endpoint_options(&root, &caller).map_err(op(OP))?;
    let base = root
        .get("resourceInfo")
        .get("id")
        .opt_str()
        .map_err(op(OP))?
        .map(|rid| owner_base(&rid));
    let list = root.get("ipDeallocations");
    let items = list.items().map_err(op(OP))?;
    if items.is_empty() {
        return Err(VraError::new(
            OP,
            IpamError::invalid(list.path(), "at least one deallocation is required"),
        ));
    }
    // Check every item before releasing anything.
    let mut planned = Vec::with_capacity(items.len());
    for item in &items {
        let parse = || -> Result<(String, NetworkId, IpAddr), IpamError> {
            let id = item.get("id").req_str()?;
            let range = item.get("ipRangeId");
            let network = parse_id(range.path(), &range.req_str()?, "a range", "Get IP Ranges")?;
            let addr_field = item.get("ipAddress");
            let address = parse_ip(addr_field.path(), &addr_field.req_str()?)?;
            Ok((id, network, address))
        };
        planned.push(parse().map_err(op(OP))?);
    }
    let mut results = Vec::with_capacity(planned.len());
    for (k, (id, network, address)) in planned.into_iter().enumerate() {
        let context =
            || format!("ipDeallocations[{k}] (id \"{id}\", {address} in range {network})");
        let held = state
            .ipam
            .find(
                &caller,
                &Lookup::Address {
                    address,
                    network: Some(network.backend_id()),
                },
            )
            .await
            .map_err(|e| VraError::new(OP, e).with_context(context()))?;
        let message = match held.first() {
            None => "Success: the address was already released".to_owned(),
            Some(a)
                if base
                    .as_deref()
                    .is_some_and(|b| a.owner.is_some() && !owned_by(a, b)) =>
            {
                // vRA releases what it believes it holds; by now someone else may hold it.
                let holder = a.owner.as_ref().map(Owner::as_str).unwrap_or_default();
                tracing::warn!(%address, network = %network, holder,
                    "vRA asked to release an address held by another owner; left in place");
                format!("Success: not released, {address} is now held by {holder}")
            }
            Some(_) => {
                state
                    .ipam
                    .release(&caller, &network, address)
                    .await
                    .map_err(|e| VraError::new(OP, e).with_context(context()))?;
                "Success".to_owned()
            }
        };
        results.push(DeallocationResult {
            ip_deallocation_id: id,
            message,
        });
    }
    Ok(Json(json!({ "ipDeallocations": results })))
}
