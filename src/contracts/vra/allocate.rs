//! Allocate IP: the machine's `ipAllocations` checked up front (`PlannedAllocation`), then taken
//! as one all-or-nothing batch of the service, each allocation's addresses from one range.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::json;

use super::dto::{AllocationResult, ip_version};
use super::endpoint::endpoint_options;
use super::errors::{VraError, op};
use super::request::{
    VraResult, dns_wanted, owner, owner_base, parse_body, parse_id, parse_ip, resource_hostname,
};
use crate::contracts::input::Field;
use crate::domain::{IpamError, NetworkId, Owner, RecordDetails};
use crate::service::{AllocationRequest, Batch, BatchMode, Caller, Rollback};
use crate::state::AppState;

/// Most addresses one `IpAllocation` may ask for (`size`).
pub(crate) const MAX_SIZE: u64 = 256;

/// One `IpAllocation`, checked before anything is taken.
#[derive(Debug)]
struct PlannedAllocation {
    index: usize,
    id: String,
    nic: u64,
    candidates: Vec<NetworkId>,
    start: Option<IpAddr>,
    /// One owner per address (`size` of them).
    owners: Vec<Owner>,
    details: RecordDetails,
}

impl PlannedAllocation {
    fn label(&self) -> String {
        format!(
            "ipAllocations[{}] (id \"{}\", NIC {})",
            self.index, self.id, self.nic
        )
    }
}

fn no_static_address(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "none" | "null" | "0.0.0.0" | "::"
    )
}

fn nth_address(field: &str, start: IpAddr, n: u64) -> Result<IpAddr, IpamError> {
    let overflow = || IpamError::invalid(field, format!("{start} + {n} is past the address space"));
    match start {
        IpAddr::V4(v4) => u32::from(v4)
            .checked_add(u32::try_from(n).map_err(|_| overflow())?)
            .map(|v| IpAddr::from(v.to_be_bytes()))
            .ok_or_else(overflow),
        IpAddr::V6(v6) => u128::from(v6)
            .checked_add(u128::from(n))
            .map(|v| IpAddr::from(v.to_be_bytes()))
            .ok_or_else(overflow),
    }
}

fn plan_allocations(root: &Field<'_>) -> Result<(String, Vec<PlannedAllocation>), IpamError> {
    let resource = root.get("resourceInfo");
    let rid_field = resource.get("id");
    let rid = rid_field.opt_str()?.ok_or_else(|| {
        IpamError::invalid(
            rid_field.path(),
            "is required: it names the machine, so that a retried request gets the same addresses",
        )
    })?;
    let base = owner_base(&rid);
    let hostname = resource_hostname(&resource)?;
    let requested_by = resource.get("owner").opt_str()?;
    let resource_name = resource.get("name").opt_str()?;
    let list = root.get("ipAllocations");
    let items = list.items()?;
    if items.is_empty() {
        return Err(IpamError::invalid(
            list.path(),
            "at least one allocation is required",
        ));
    }
    let mut plans: Vec<PlannedAllocation> = Vec::with_capacity(items.len());
    let mut nic_seen: BTreeMap<u64, usize> = BTreeMap::new();
    for (k, item) in items.iter().enumerate() {
        if !item.is_object() {
            return Err(IpamError::invalid(
                format!("{}[{k}]", list.path()),
                "expected an object",
            ));
        }
        let id = item.get("id").req_str()?;
        if let Some(other) = plans.iter().find(|p| p.id == id) {
            return Err(IpamError::invalid(
                item.get("id").path(),
                format!(
                    "'{id}' is also the id of ipAllocations[{}]; results are matched by id",
                    other.index
                ),
            ));
        }
        let ranges_field = item.get("ipRangeIds");
        let range_texts = ranges_field.str_list()?;
        if range_texts.is_empty() {
            return Err(IpamError::invalid(
                ranges_field.path(),
                "at least one range id is required",
            ));
        }
        let candidates = range_texts
            .iter()
            .enumerate()
            .map(|(j, t)| {
                parse_id(
                    &format!("{}[{j}]", ranges_field.path()),
                    t,
                    "a range",
                    "Get IP Ranges",
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nic = item.get("nicIndex").opt_u64()?.unwrap_or(k as u64);
        let size_field = item.get("size");
        let size = size_field.opt_u64()?.unwrap_or(1);
        if size == 0 || size > MAX_SIZE {
            return Err(IpamError::invalid(
                size_field.path(),
                format!("must be 1..{MAX_SIZE}, got {size}"),
            ));
        }
        let start_field = item.get("start");
        let start = match start_field.opt_str()? {
            Some(t) if !no_static_address(&t) => Some(parse_ip(start_field.path(), &t)?),
            _ => None,
        };
        if let Some(s) = start {
            nth_address(start_field.path(), s, size - 1)?;
        }
        // Two allocations for one NIC (dual stack) get distinct owners, stable across retries.
        let seen = nic_seen.entry(nic).or_insert(0);
        let nic_key = if *seen == 0 {
            format!("nic{nic}")
        } else {
            format!("nic{nic}.{seen}")
        };
        *seen += 1;
        let owners = (0..size)
            .map(|i| {
                let text = if size == 1 {
                    format!("{base}/{nic_key}")
                } else {
                    format!("{base}/{nic_key}/{i}")
                };
                owner(rid_field.path(), text)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut description = format!(
            "vRA {} NIC {nic}",
            resource_name.as_deref().unwrap_or(rid.as_str())
        );
        if let Some(by) = &requested_by {
            description.push_str(&format!(", requested by {by}"));
        }
        if let Some(d) = item.get("description").opt_str()? {
            description.push_str(&format!(": {d}"));
        }
        plans.push(PlannedAllocation {
            index: k,
            id,
            nic,
            candidates,
            start,
            owners,
            details: RecordDetails {
                aliases: Vec::new(),
                hostname: hostname.clone(),
                description: Some(description),
                mac: None,
            },
        });
    }
    Ok((rid, plans))
}

/// Names ranges for messages: `lab-tiny (local.ZGVm…)`.
async fn range_names(state: &AppState, caller: &Caller, ids: &[NetworkId]) -> String {
    let snapshot = state.ipam.network_snapshot(caller).await.ok();
    ids.iter()
        .map(|id| {
            match snapshot
                .as_ref()
                .and_then(|s| s.iter().find(|n| &n.id == id))
            {
                Some(n) => format!("{} ({}, {id})", n.info.name, n.info.cidr),
                None => id.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Allocate IP: every `IpAllocation` of the machine, all or nothing.
pub(super) async fn allocate_ip(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "allocate-ip";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    endpoint_options(&root, &caller).map_err(op(OP))?;
    let (rid, plans) = plan_allocations(&root).map_err(op(OP))?;
    let ipam = &state.ipam;
    let register_dns = dns_wanted(&root).map_err(op(OP))?;
    // The core names a bad host name `hostname`; vRA's field is the resourceInfo key it came from.
    let resource = root.get("resourceInfo");
    let hostname_field = ["hostName", "hostname", "name"]
        .into_iter()
        .map(|k| resource.get(k))
        .find(Field::is_present)
        .map_or_else(|| "resourceInfo.name".to_owned(), |f| f.path().to_owned());

    // Every address of one IpAllocation comes from one range (contract p.14): one batch group
    // per plan. An owner that already holds an address in a candidate gets that one back
    // (`HeldFirst`: one owner lookup, then the candidates in order).
    let mut batch = Batch::new(BatchMode::HeldFirst { register_dns });
    // Item index → (plan, address number within the plan).
    let mut items: Vec<(&PlannedAllocation, usize)> = Vec::new();
    for (p, plan) in plans.iter().enumerate() {
        for (i, owner) in plan.owners.iter().enumerate() {
            let address = plan
                .start
                .map(|s| nth_address("start", s, i as u64))
                .transpose()
                .map_err(op(OP))?;
            batch.push_grouped(
                p,
                AllocationRequest {
                    owner: owner.clone(),
                    networks: plan.candidates.clone(),
                    address,
                    details: plan.details.clone(),
                    aliases: Vec::new(),
                },
            );
            items.push((plan, i));
        }
    }
    let taken = match ipam.run_batch(&caller, &batch).await {
        Ok(t) => t,
        Err(f) => {
            let Some(&(plan, i)) = items.get(f.index) else {
                return Err(VraError::new(OP, f.error).with_note(roll_back_note(&f.rollback)));
            };
            // The core names the specific address `address`; vRA calls it `start`.
            let error = match f.error {
                IpamError::InvalidInput { field, why } if field == "address" => {
                    IpamError::InvalidInput {
                        field: format!("ipAllocations[{}].start", plan.index),
                        why,
                    }
                }
                IpamError::InvalidInput { field, why } if field == "hostname" => {
                    IpamError::InvalidInput {
                        field: hostname_field.clone(),
                        why,
                    }
                }
                other => other,
            };
            let names = range_names(&state, &caller, &f.tried).await;
            let what = if plan.owners.len() > 1 {
                format!(
                    "{}: address {} of {} from range(s) {names}",
                    plan.label(),
                    i + 1,
                    plan.owners.len()
                )
            } else {
                format!("{} from range(s) {names}", plan.label())
            };
            return Err(VraError::new(OP, error)
                .with_context(what)
                .with_note(roll_back_note(&f.rollback)));
        }
    };
    let mut placed: Vec<(NetworkId, Vec<IpAddr>)> = Vec::with_capacity(plans.len());
    for (p, plan) in plans.iter().enumerate() {
        match taken.network_of(p) {
            Some(n) => placed.push((n.clone(), taken.in_group(p).map(|a| a.address).collect())),
            None => {
                let note = roll_back_note(&ipam.roll_back(&caller, taken).await);
                return Err(
                    VraError::new(OP, IpamError::Internal("no address was taken".into()))
                        .with_context(plan.label())
                        .with_note(note),
                );
            }
        }
    }

    let mut results = Vec::with_capacity(plans.len());
    for (plan, (network_id, addresses)) in plans.iter().zip(&placed) {
        let net = match ipam.network_settings(&caller, network_id).await {
            Ok(n) => n,
            Err(e) => {
                let note = roll_back_note(&ipam.roll_back(&caller, taken).await);
                return Err(VraError::new(OP, e)
                    .with_context(format!("{}: reading range {network_id}", plan.label()))
                    .with_note(note));
            }
        };
        let i = &net.info;
        let mut properties = BTreeMap::new();
        properties.insert("ipamGateway.network".to_owned(), i.name.clone());
        properties.insert("ipamGateway.cidr".to_owned(), i.cidr.to_string());
        results.push(AllocationResult {
            ip_allocation_id: plan.id.clone(),
            ip_range_id: net.id.to_string(),
            ip_version: ip_version(net.family()),
            ip_addresses: addresses.iter().map(ToString::to_string).collect(),
            subnet_prefix_length: i.cidr.prefix_len().to_string(),
            gateway_addresses: i.gateway.iter().map(ToString::to_string).collect(),
            dns_server_addresses: i.dns_servers.iter().map(ToString::to_string).collect(),
            domain: i.dns_domain.clone(),
            dns_search_domains: i.dns_search_domains.clone(),
            properties,
        });
    }
    tracing::info!(resource = %rid, allocations = results.len(), addresses = taken.allocations().len(),
        "vRA allocation done");
    Ok(Json(json!({ "ipAllocations": results })))
}

/// Says how the rollback of what this request took went, for the error message.
fn roll_back_note(rollback: &Rollback) -> String {
    let done = &rollback.taken;
    let failures = &rollback.failures;
    if done.is_empty() {
        return "nothing was allocated".to_owned();
    }
    if failures.is_empty() {
        format!(
            "the {} address(es) allocated earlier in this request were released",
            done.len()
        )
    } else {
        format!(
            "rolling back the {} address(es) allocated earlier in this request left {} in place: {}",
            done.len(),
            failures.len(),
            failures.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_addresses_and_overflow() {
        let s: IpAddr = "10.0.0.254".parse().expect("ip");
        assert_eq!(
            nth_address("start", s, 1).expect("ok").to_string(),
            "10.0.0.255"
        );
        let top: IpAddr = "255.255.255.255".parse().expect("ip");
        assert!(nth_address("start", top, 1).is_err());
    }

    #[test]
    fn static_address_placeholders_mean_none() {
        for t in ["none", "None", "0.0.0.0", "::", "null"] {
            assert!(no_static_address(t), "{t}");
        }
        assert!(!no_static_address("10.0.0.5"));
    }
}
