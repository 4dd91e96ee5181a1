//! Update Record: the MAC address and host name of addresses the machine holds.

use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::json;

use super::endpoint::endpoint_options;
use super::errors::{VraError, op};
use super::request::{
    VraResult, dns_wanted, owned_by, owner_base, parse_body, parse_ip, resource_hostname,
};
use crate::contracts::input::Field;
use crate::domain::{IpamError, Lookup, Mac, Owner, RecordChanges};
use crate::service::Caller;
use crate::state::AppState;

/// Update Record: the MAC and host name vRA learnt after allocating, on the machine's records.
pub(super) async fn update_record(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "update-record";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    endpoint_options(&root, &caller).map_err(op(OP))?;
    let resource = root.get("resourceInfo");
    let base = resource
        .get("id")
        .opt_str()
        .map_err(op(OP))?
        .map(|rid| owner_base(&rid));
    let hostname = match root.get("hostName").opt_str().map_err(op(OP))? {
        Some(h) => Some(h),
        None => resource_hostname(&resource).map_err(op(OP))?,
    };
    // A machine that opted out of DNS at allocation stays out when its record changes.
    let register_dns = dns_wanted(&root).map_err(op(OP))?;
    let list = root.get("addressInfos");
    let items = list.items().map_err(op(OP))?;
    if items.is_empty() {
        return Err(VraError::new(
            OP,
            IpamError::invalid(list.path(), "at least one address is required"),
        ));
    }
    let mut planned = Vec::with_capacity(items.len());
    for item in &items {
        let parse = || -> Result<(IpAddr, Option<Mac>), IpamError> {
            let addr_field = item.get("address");
            let address = parse_ip(addr_field.path(), &addr_field.req_str()?)?;
            let mac_field = item.get("macAddress");
            let mac = mac_field
                .opt_str()?
                .map(|m| Mac::parse(&m).map_err(|why| IpamError::invalid(mac_field.path(), why)))
                .transpose()?;
            Ok((address, mac))
        };
        planned.push(parse().map_err(op(OP))?);
    }
    let mut results = Vec::with_capacity(planned.len());
    for (k, (address, mac)) in planned.into_iter().enumerate() {
        let context = || format!("addressInfos[{k}] ({address})");
        let held = state
            .ipam
            .find(
                &caller,
                &Lookup::Address {
                    address,
                    network: None,
                },
            )
            .await
            .map_err(|e| VraError::new(OP, e).with_context(context()))?;
        let target = match &base {
            Some(b) => held.iter().find(|a| owned_by(a, b)).ok_or_else(|| {
                let holders: Vec<String> = held
                    .iter()
                    .map(|a| {
                        format!(
                            "{} in {}",
                            a.owner.as_ref().map(Owner::as_str).unwrap_or("no owner"),
                            a.network_id
                        )
                    })
                    .collect();
                IpamError::NotFound(if holders.is_empty() {
                    format!("{address} is not allocated")
                } else {
                    format!(
                        "{address} is not held by this machine ({b}); held by {}",
                        holders.join(", ")
                    )
                })
            }),
            None => match held.as_slice() {
                [one] => Ok(one),
                [] => Err(IpamError::NotFound(format!("{address} is not allocated"))),
                _ => Err(IpamError::Conflict(format!(
                    "{address} is allocated in {} networks; resourceInfo.id is needed to tell which",
                    held.len()
                ))),
            },
        }
        .map_err(|e| VraError::new(OP, e).with_context(context()))?;
        let changes = RecordChanges {
            aliases: None,
            hostname: hostname.clone(),
            description: None,
            mac,
        };
        if changes != RecordChanges::default() {
            if register_dns {
                state
                    .ipam
                    .update(&caller, &target.network_id, address, &changes)
                    .await
            } else {
                state
                    .ipam
                    .update_unregistered(&caller, &target.network_id, address, &changes)
                    .await
            }
            .map_err(|e| VraError::new(OP, e).with_context(context()))?;
        }
        results.push("Success");
    }
    Ok(Json(json!({ "updateResults": results })))
}
