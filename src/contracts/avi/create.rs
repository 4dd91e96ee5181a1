//! CreateIpamRecord: one address per family for an Avi record, taken as one all-or-nothing
//! batch of the service.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;

use super::dto::{AllocationType, record_info};
use super::errors::{AviError, AviException, core};
use super::records::{alloc_info, candidates, describe_ids, family_label, held_by, roll_back_note};
use super::request::{
    AviResult, answer, check_backend, details, owner_of, parse_body, required_id,
};
use crate::domain::{Family, IpamError, Network, NetworkId};
use crate::service::{AllocationRequest, Batch, BatchMode, Caller};
use crate::state::AppState;

pub(super) async fn create_ipam_record(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> AviResult {
    const F: &str = "CreateIpamRecord";
    let body = parse_body(F, &body)?;
    check_backend(F, &body, &caller)?;
    let r = record_info(&body, "record_info").map_err(core(F))?;
    let id = required_id(F, &r, "record_info")?;
    let ctx = || format!("record '{id}'");
    let owner = owner_of(&id).map_err(core(F))?;
    let kind = r.allocation_type.unwrap_or(AllocationType::V4Only);
    let nets: Arc<Vec<Network>> = state
        .ipam
        .network_snapshot(&caller)
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
    let held = held_by(F, &state, &caller, &id, &owner).await?;

    // Plan every family before taking anything.
    let mut plan: Vec<(Family, Vec<NetworkId>)> = Vec::new();
    for &family in kind.families() {
        if let Some(h) = held.iter().find(|a| Family::of_addr(&a.address) == family) {
            // Avi retries a create it did not hear back from: the record already holds this.
            if let Some(p) = r.preferred(family)
                && p != h.address
            {
                return Err(AviError::new(
                    F,
                    AviException::General,
                    IpamError::Conflict(format!(
                        "the record already holds {} in {}, not the preferred {p}; \
                         change it with UpdateIpamRecord",
                        h.address, h.network_id
                    )),
                )
                .with_context(ctx()));
            }
            continue;
        }
        let ids = candidates(&nets, &r, family, "record_info", false)
            .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?
            .unwrap_or_default();
        plan.push((family, ids));
    }
    // Every fqdn gets the addresses' records: a name DNS cannot take is refused here, naming
    // `record_info.fqdns[k]`, before any address is taken.
    let candidates: Vec<NetworkId> = plan.iter().flat_map(|(_, ids)| ids.clone()).collect();
    state
        .ipam
        .check_names(&caller, &candidates, &r.named_fqdns())
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
    let aliases = r.aliases();

    let mut batch = Batch::new(BatchMode::InOrder);
    for (family, ids) in &plan {
        batch.push(AllocationRequest {
            owner: owner.clone(),
            networks: ids.clone(),
            address: r.preferred(*family),
            details: details(&id, &r),
            aliases: aliases.clone(),
        });
    }
    let taken = match state.ipam.run_batch(&caller, &batch).await {
        Ok(t) => t,
        Err(f) => {
            let what = match plan.get(f.index) {
                Some((family, ids)) => format!(
                    "{}: {} from {}",
                    ctx(),
                    family_label(*family),
                    describe_ids(&nets, ids)
                ),
                None => ctx(),
            };
            return Err(AviError::from_core(F, f.error)
                .with_context(what)
                .with_note(roll_back_note(&f.rollback)));
        }
    };
    let mut all = held;
    all.extend(taken.allocations().iter().cloned());
    match alloc_info(&state, &caller, &all).await {
        Ok(info) => {
            tracing::info!(record = %id, owner = %owner, v4 = ?info.v4_ip, v6 = ?info.v6_ip,
                "Avi record created");
            answer(info)
        }
        Err(e) => {
            let note = roll_back_note(&state.ipam.roll_back(&caller, taken).await);
            Err(AviError::from_core(F, e)
                .with_context(ctx())
                .with_note(note))
        }
    }
}
