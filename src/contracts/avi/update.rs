//! UpdateIpamRecord: a record's families planned one by one (keep, move, add, drop), the new
//! addresses taken as one batch, then names and released addresses brought in line.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;

use super::dto::{AllocationType, RecordInfo, record_info};
use super::errors::{AviError, AviException, core};
use super::records::{
    alloc_info, candidates, describe_ids, existing_record, family_label, roll_back_note,
};
use super::request::{AviResult, answer, check_backend, details, held_names, owner_of, parse_body};
use crate::domain::{Allocation, Family, IpamError, Network, NetworkId, RecordChanges};
use crate::service::{AllocationRequest, Batch, BatchMode, Caller};
use crate::state::AppState;

/// What happens to one family of a record.
enum Step {
    /// Keep this address (maybe with a new hostname) and release the others of its family.
    Keep(Allocation, Vec<Allocation>),
    /// Take a new address from these networks, then release these.
    Take(Vec<NetworkId>, Option<IpAddr>, Vec<Allocation>),
    /// Release these (the family is no longer wanted).
    Drop(Vec<Allocation>),
}

fn plan_family(
    nets: &[Network],
    new: &RecordInfo,
    family: Family,
    wanted: bool,
    held: Vec<Allocation>,
) -> Result<Step, IpamError> {
    const P: &str = "new_record_info";
    if !wanted {
        return Ok(Step::Drop(held));
    }
    let constraint = candidates(nets, new, family, P, true)?;
    let preferred = new.preferred(family);
    let keep = held.iter().position(|a| match (preferred, &constraint) {
        (Some(p), _) => a.address == p,
        (None, Some(ids)) => ids.contains(&a.network_id),
        (None, None) => true,
    });
    match keep {
        Some(k) => {
            let mut rest = held;
            let kept = rest.remove(k);
            Ok(Step::Keep(kept, rest))
        }
        None => {
            let ids = match constraint {
                Some(ids) => ids,
                None => candidates(nets, new, family, P, false)?.unwrap_or_default(),
            };
            Ok(Step::Take(ids, preferred, held))
        }
    }
}

pub(super) async fn update_ipam_record(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> AviResult {
    const F: &str = "UpdateIpamRecord";
    let body = parse_body(F, &body)?;
    check_backend(F, &body, &caller)?;
    let new = record_info(&body, "new_record_info").map_err(core(F))?;
    let old = match body.get("old_record_info").filter(|v| !v.is_null()) {
        Some(_) => Some(record_info(&body, "old_record_info").map_err(core(F))?),
        None => None,
    };
    let old_id = old.as_ref().and_then(|o| o.id.clone());
    let id = match (&new.id, &old_id) {
        (Some(n), Some(o)) if n != o => {
            return Err(AviError::new(
                F,
                AviException::NotImplemented,
                IpamError::Unsupported(format!(
                    "changing the record id ('{o}' to '{n}') is not supported: delete the record and create a new one"
                )),
            ));
        }
        (Some(n), _) => n.clone(),
        (None, Some(o)) => o.clone(),
        (None, None) => {
            return Err(AviError::from_core(
                F,
                IpamError::invalid(
                    "new_record_info.id",
                    "is required: the vsvip uuid names the record",
                ),
            ));
        }
    };
    let ctx = || format!("record '{id}'");
    let owner = owner_of(&id).map_err(core(F))?;
    let held = existing_record(F, &state, &caller, &id, &owner).await?;
    let nets: Arc<Vec<Network>> = state
        .ipam
        .network_snapshot(&caller)
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
    let kind = match new.allocation_type {
        Some(k) => k,
        None => AllocationType::from_families(
            held.iter().any(|a| a.address.is_ipv4()),
            held.iter().any(|a| a.address.is_ipv6()),
        )
        .unwrap_or(AllocationType::V4Only),
    };

    // Plan both families before changing anything.
    let mut steps = Vec::new();
    for family in [Family::V4, Family::V6] {
        let mine: Vec<Allocation> = held
            .iter()
            .filter(|a| Family::of_addr(&a.address) == family)
            .cloned()
            .collect();
        let wanted = kind.families().contains(&family);
        if !wanted && mine.is_empty() {
            continue;
        }
        let step = plan_family(&nets, &new, family, wanted, mine)
            .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
        steps.push((family, step));
    }

    // Every new fqdn gets the addresses' records: a name DNS cannot take is refused here,
    // naming `new_record_info.fqdns[k]`, before anything changes.
    let name_networks: Vec<NetworkId> = steps
        .iter()
        .flat_map(|(_, step)| match step {
            Step::Keep(a, _) => vec![a.network_id.clone()],
            Step::Take(ids, _, _) => ids.clone(),
            Step::Drop(_) => Vec::new(),
        })
        .collect();
    state
        .ipam
        .check_names(&caller, &name_networks, &new.named_fqdns())
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
    let aliases = new.aliases();
    let old_fqdns: Vec<String> = old.as_ref().map(|o| o.fqdns.clone()).unwrap_or_default();

    // Take first: a failure leaves the record as it was.
    let new_details = details(&id, &new);
    // What the record holds after the change, in family order: kept as it is, or the batch
    // item that takes its new address.
    enum Slot {
        Kept(Box<Allocation>),
        New(usize),
    }
    let mut slots: Vec<Slot> = Vec::new();
    let mut release: Vec<Allocation> = Vec::new();
    let mut batch = Batch::new(BatchMode::Another);
    let mut wanted: Vec<(Family, Vec<NetworkId>)> = Vec::new();
    for (family, step) in steps {
        match step {
            Step::Keep(a, rest) => {
                release.extend(rest);
                slots.push(Slot::Kept(Box::new(a)));
            }
            Step::Drop(all) => release.extend(all),
            Step::Take(ids, address, old) => {
                let index = batch.push(AllocationRequest {
                    owner: owner.clone(),
                    networks: ids.clone(),
                    address,
                    details: new_details.clone(),
                    aliases: aliases.clone(),
                });
                wanted.push((family, ids));
                slots.push(Slot::New(index));
                release.extend(old);
            }
        }
    }
    let taken = match state.ipam.run_batch(&caller, &batch).await {
        Ok(t) => t,
        Err(f) => {
            let what = match wanted.get(f.index) {
                Some((family, ids)) => format!(
                    "{}: new {} from {}",
                    ctx(),
                    family_label(*family),
                    describe_ids(&nets, ids)
                ),
                None => ctx(),
            };
            let note = roll_back_note(&f.rollback);
            return Err(AviError::from_core(F, f.error)
                .with_context(what)
                .with_note(format!("{note}; the record is unchanged")));
        }
    };
    let mut result: Vec<Allocation> = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Slot::Kept(a) => result.push(*a),
            Slot::New(i) => result.extend(taken.allocations().get(i).cloned()),
        }
    }

    // fqdn changes on the addresses that stay.
    for a in result.iter_mut() {
        if taken.allocations().iter().any(|t| t.id == a.id) {
            continue;
        }
        let hostname = new_details.hostname.clone().unwrap_or_default();
        let changes = RecordChanges {
            hostname: (a.hostname.clone().unwrap_or_default() != hostname).then_some(hostname),
            description: (a.description != new_details.description)
                .then(|| new_details.description.clone())
                .flatten(),
            mac: None,
            aliases: (a.aliases != aliases).then(|| aliases.clone()),
        };
        // The names it had (host name, old fqdns, described ones) against the new fqdns: the
        // names that leave lose this address's records, the new ones get them.
        let had = held_names(&id, a, &old_fqdns);
        if changes == RecordChanges::default() && had == new.fqdns {
            continue;
        }
        match state
            .ipam
            .update_with_aliases(&caller, &a.network_id, a.address, &changes, &had, &aliases)
            .await
        {
            Ok(updated) => *a = updated,
            Err(e) => {
                let note = roll_back_note(&state.ipam.roll_back(&caller, taken).await);
                return Err(AviError::from_core(F, e)
                    .with_context(format!("{}: new fqdns on {}", ctx(), a.address))
                    .with_note(format!("{note}; the record is otherwise unchanged")));
            }
        }
    }

    // Then give back what the record no longer holds.
    for a in &release {
        let names = held_names(&id, a, &old_fqdns);
        if let Err(e) = state
            .ipam
            .release_with_aliases(&caller, &a.network_id, a.address, &names)
            .await
        {
            return Err(AviError::from_core(F, e).with_context(format!(
                "{}: releasing the replaced {} (the new addresses are in place; retrying the \
                 update releases it)",
                ctx(),
                a.address
            )));
        }
    }

    let info = alloc_info(&state, &caller, &result)
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
    tracing::info!(record = %id, allocation_type = kind.as_str(), took = taken.allocations().len(),
        released = release.len(), "Avi record updated");
    answer(info)
}
