//! Taking addresses: one per request, idempotent per owner (an owner that holds an address
//! in a candidate gets it back), serialised per owner in this process, and the convergence of
//! replicas that raced for one owner ([`Ipam::converge`]).

use std::sync::Arc;

use super::locks::LockKey;
use super::{AllocationRequest, Caller, Ipam, timed};
use crate::backends::{Backend, Claim};
use crate::domain::{
    AllocateIn, Allocation, AllocationInfo, IpamError, IpamResult, NetworkId, Owner,
};

/// How [`Ipam::allocate_inner`] treats addresses the owner already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reuse {
    /// Candidates in order: one the owner holds an address in gives that address back.
    InOrder,
    /// Any candidate the owner holds an address in gives that address back, before trying the
    /// candidates in order.
    HeldFirst,
    /// Never: take another address.
    Never,
}

impl Ipam {
    async fn allocate_registered(
        &self,
        caller: &Caller,
        req: &AllocationRequest,
        reuse: Reuse,
    ) -> IpamResult<Allocation> {
        let names = self.check_request_names(caller, req).await?;
        let (a, taken) = self.allocate_inner(caller, req, reuse).await?;
        if let Some((host, aliases)) = names {
            self.register_taken(caller, &a, host.as_deref(), &aliases, taken)
                .await?;
        }
        Ok(a)
    }

    /// Takes one address for an owner, trying candidate networks in order. Idempotent per owner
    /// and network: an owner that already holds an address there gets it back.
    pub async fn allocate(
        &self,
        caller: &Caller,
        req: &AllocationRequest,
    ) -> IpamResult<Allocation> {
        self.allocate_registered(caller, req, Reuse::InOrder).await
    }

    /// Like [`Ipam::allocate`], but an owner that already holds an address in any of the
    /// candidate networks gets that one back, whatever the candidates' order (the retry of a
    /// request whose first candidate was full when it first ran).
    pub async fn allocate_held_first(
        &self,
        caller: &Caller,
        req: &AllocationRequest,
    ) -> IpamResult<Allocation> {
        self.allocate_registered(caller, req, Reuse::HeldFirst)
            .await
    }

    /// [`Ipam::allocate_held_first`] without registering the host name in DNS (a machine that
    /// opted out, e.g. vRA's `ipamgw.dns = "false"`).
    pub async fn allocate_held_first_unregistered(
        &self,
        caller: &Caller,
        req: &AllocationRequest,
    ) -> IpamResult<Allocation> {
        Ok(self.allocate_inner(caller, req, Reuse::HeldFirst).await?.0)
    }

    /// Takes one more address for an owner, trying candidate networks in order, even when the
    /// owner already holds one there. For moving an owner's address in place (take the new one,
    /// then release the old): [`Ipam::allocate`] would hand the held one back instead. Not
    /// idempotent by itself; callers look the owner up first.
    pub async fn allocate_another(
        &self,
        caller: &Caller,
        req: &AllocationRequest,
    ) -> IpamResult<Allocation> {
        self.allocate_registered(caller, req, Reuse::Never).await
    }

    /// The allocation, and whether this request took its address (`false`: the owner held it
    /// already, from an earlier attempt of this request or a concurrent one).
    async fn allocate_inner(
        &self,
        caller: &Caller,
        req: &AllocationRequest,
        reuse: Reuse,
    ) -> IpamResult<(Allocation, bool)> {
        if req.networks.is_empty() {
            return Err(IpamError::invalid(
                "networks",
                "at least one network id is required",
            ));
        }
        for id in &req.networks {
            self.check_route(caller, id, "network")?;
        }
        let backend = self.backend(&caller.backend)?;
        // One request per owner at a time in this process: the lookup below and the allocation
        // after it cannot race with a retry of the same request. Different owners go to the
        // backend concurrently, as they do from several replicas; its atomic primitive decides.
        let _guard = self
            .locks
            .lock(LockKey::Owner {
                backend: caller.backend.clone(),
                owner: req.owner.clone(),
            })
            .await;
        // A backend that claims atomically (the owner's address, or a new one, in one step) needs
        // no lookup first when the candidates are tried in order anyway; `HeldFirst` with several
        // candidates must look across all of them before taking anything.
        let one_step = backend.atomic_claim()
            && match reuse {
                Reuse::InOrder => true,
                Reuse::HeldFirst => req.networks.len() == 1,
                Reuse::Never => false,
            };
        // Whether this request looks the owner up itself, before and after taking an address
        // (see [`Ipam::converge`]); not when it deliberately takes another one (`Never`), nor
        // when the backend's `claim` does both in one step.
        let looks = reuse != Reuse::Never && !one_step;
        let returning = |existing: AllocationInfo, id: &NetworkId| {
            if let Some(wanted) = req.address
                && wanted != existing.address
            {
                return Err(IpamError::Conflict(format!(
                    "owner {} already holds {} in network {id}, not {wanted}",
                    req.owner, existing.address
                )));
            }
            tracing::debug!(owner = %req.owner, address = %existing.address, "owner already holds an address; returning it");
            Ok((self.to_allocation(&caller.backend, existing), false))
        };
        if reuse == Reuse::HeldFirst && looks {
            for id in &req.networks {
                if let Some(existing) = self
                    .first_held(caller, backend, &req.owner, &id.backend_id())
                    .await?
                {
                    return returning(existing, id);
                }
            }
        }
        let mut exhausted = Vec::new();
        let mut outside = 0usize;
        for id in &req.networks {
            let local = id.backend_id();
            if reuse == Reuse::InOrder
                && looks
                && let Some(existing) = self.first_held(caller, backend, &req.owner, &local).await?
            {
                return returning(existing, id);
            }
            let one = AllocateIn {
                network: local,
                owner: req.owner.clone(),
                address: req.address,
                details: req.details.clone(),
            };
            // Per-network serialisation only where the backend's allocation is not atomic.
            let network_guard = if backend.atomic_allocation() {
                None
            } else {
                Some(self.locks.lock(LockKey::NextFree(id.clone())).await)
            };
            let outcome = if one_step {
                timed(&caller.backend, "claim", backend.claim(&caller.cx, &one)).await
            } else {
                timed(
                    &caller.backend,
                    "allocate",
                    backend.allocate(&caller.cx, &one),
                )
                .await
                .map(Claim::Taken)
            };
            drop(network_guard);
            match outcome {
                Ok(Claim::Held(existing)) => return returning(existing, id),
                Ok(Claim::Taken(a)) => {
                    self.invalidate(&caller.backend);
                    metrics::counter!("ipamgw_allocations_total", "backend" => caller.backend.clone()).increment(1);
                    if !looks {
                        return Ok((self.to_allocation(&caller.backend, a), true));
                    }
                    let taken = a.address;
                    let kept = self.converge(caller, backend, &req.owner, a).await?;
                    if kept.address == taken {
                        return Ok((self.to_allocation(&caller.backend, kept), true));
                    }
                    return returning(kept, id);
                }
                // Refused as taken: by another replica's attempt for this owner (the same
                // address asked for, or the same owner-derived record name on Infoblox)? Then
                // the owner holds a record there now, and that is the answer.
                Err(IpamError::Conflict(why)) if looks => {
                    return match self
                        .first_held(caller, backend, &req.owner, &one.network)
                        .await?
                    {
                        Some(existing) => returning(existing, id),
                        None => Err(IpamError::Conflict(why)),
                    };
                }
                Err(IpamError::Exhausted(why)) => exhausted.push(why),
                // A specific address only fits one of the candidates; try the others.
                Err(IpamError::InvalidInput { field, .. })
                    if field == "address" && req.address.is_some() && req.networks.len() > 1 =>
                {
                    outside += 1;
                }
                Err(other) => return Err(other),
            }
        }
        if let Some(addr) = req.address
            && outside == req.networks.len()
        {
            return Err(IpamError::invalid(
                "address",
                format!("{addr} is not inside any of the candidate networks"),
            ));
        }
        Err(IpamError::Exhausted(exhausted.join("; ")))
    }

    /// The record `owner` holds in one backend-local `network` that was written first
    /// ([`Backend::first_written`]), if it holds any there. Several records are what racing
    /// replicas leave while they converge, or after one of them died between taking an address
    /// and [`Ipam::converge`]: this answers with the one every replica keeps. It releases none
    /// of the others: a later record may be another replica's attempt still in flight, which
    /// releases it itself; releasing it from here (by address) could free it just before that
    /// replica releases the same address again, by then perhaps another owner's.
    async fn first_held(
        &self,
        caller: &Caller,
        backend: &Arc<dyn Backend>,
        owner: &Owner,
        network: &str,
    ) -> IpamResult<Option<AllocationInfo>> {
        let held = timed(
            &caller.backend,
            "find_owner_in",
            backend.find_owner_in(&caller.cx, owner, network),
        )
        .await?;
        Ok(held
            .into_iter()
            .filter(|a| a.network == network)
            .min_by(|a, b| backend.first_written(a, b)))
    }

    /// Called right after this replica took `taken` for `owner`, under this process's lock on
    /// the owner: looks the owner up again in that network and keeps the record written first
    /// ([`Backend::first_written`]). When that is another one, this replica releases its own
    /// and answers with that one.
    ///
    /// Why it converges. Another replica may run the same request at the same time (vRA
    /// retrying through a load balancer while the first attempt is still in flight): both look
    /// the owner up, find nothing, and both take an address — the lookup and the allocation are
    /// two backend calls on phpIPAM and Infoblox, and the owner lock is per process. Let `r1`
    /// be the first of the owner's records written in that network (the order of
    /// [`Backend::first_written`], which each backend makes follow the order in which records
    /// become visible to a lookup, owner marker included). Every other attempt wrote its record
    /// after `r1` and looks again after its own write, so its lookup sees `r1`, ranks it first
    /// and answers with it, releasing its own. `r1` itself is never released: only the replica
    /// that wrote a record releases it, and only when its lookup shows an earlier one, which
    /// for `r1` does not exist. The replica that wrote `r1` sees `r1` first too — whether its
    /// lookup came before or after the others wrote — so it answers with `r1`, even if it
    /// answered before the others existed. A request that finds the owner's records before
    /// taking anything ([`Ipam::first_held`]) answers with the first-written one as well. So
    /// every answer names `r1`, and once every attempt has finished only `r1` is left. This
    /// is why the order must be the order of writing, not any stable order: were a later
    /// record ranked first, the replica that wrote the earlier one and looked before the later
    /// one existed would keep and answer its own, and the other would keep the later one.
    ///
    /// What does not hold:
    /// - A replica that dies (or loses the backend) between taking its address and this lookup
    ///   leaves its record. If it was not `r1`, the owner holds two records until it is
    ///   released: every later request for the owner answers with `r1` (the first-written rule
    ///   above), but no request releases the other, since it cannot tell it from one still in
    ///   flight (see [`Ipam::first_held`]). `DELETE /api/v1/allocations?owner=` releases both;
    ///   a vRA deallocation releases only the address it was given. The same when the lookup
    ///   here or the release of the loser fails: the lookup's error is the answer (the record
    ///   stays the owner's, so a retry finds it); a failed release is logged and counted
    ///   (`ipamgw_allocation_races_total{outcome="release_failed"}`) and the answer is `r1`.
    /// - The order must follow writing order: phpIPAM's ids do up to an insert stalled between
    ///   taking its id and committing; on Infoblox the lowest address was taken first unless a
    ///   lower one was freed inside the race window (see each backend's `first_written`).
    /// - Per network only: when the racing attempts end up in different candidate networks
    ///   (the first candidate filled up in between), each keeps its own.
    /// - `r1` stays only while nobody else releases it: a multi-NIC vRA attempt that fails on a
    ///   later NIC rolls back the earlier NICs it answered, `r1` among them if that is what it
    ///   converged on (the contract's rollback, not this rule).
    /// - Attempts that take another address on purpose (`Reuse::Never`, moving an address in
    ///   place) are not converged, and a backend whose `claim` is one atomic step (the embedded
    ///   store, single-instance) never needs it.
    async fn converge(
        &self,
        caller: &Caller,
        backend: &Arc<dyn Backend>,
        owner: &Owner,
        taken: AllocationInfo,
    ) -> IpamResult<AllocationInfo> {
        let held = match timed(
            &caller.backend,
            "find_owner_in",
            backend.find_owner_in(&caller.cx, owner, &taken.network),
        )
        .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::error!(owner = %owner, address = %taken.address, network = %taken.network,
                    error = %e, "took an address but could not look the owner up again; it stays the owner's");
                return Err(e);
            }
        };
        let held: Vec<AllocationInfo> = held
            .into_iter()
            .filter(|a| a.network == taken.network)
            .collect();
        // Ours is in the lookup unless something removed it since; rank it either way.
        let first = held
            .iter()
            .chain(std::iter::once(&taken))
            .min_by(|a, b| backend.first_written(a, b))
            .cloned()
            .unwrap_or_else(|| taken.clone());
        let others = held.iter().filter(|a| a.address != taken.address).count();
        if first.address == taken.address {
            if others > 0 {
                tracing::info!(owner = %owner, address = %taken.address, others,
                    "another replica took an address for this owner too; ours was first and stays");
                race_counter(&caller.backend, "kept");
            }
            return Ok(taken);
        }
        tracing::info!(owner = %owner, released = %taken.address, kept = %first.address,
            "another replica took an address for this owner first; releasing ours");
        match timed(
            &caller.backend,
            "release",
            backend.release(&caller.cx, &taken.network, taken.address),
        )
        .await
        {
            Ok(()) => race_counter(&caller.backend, "released"),
            Err(e) => {
                tracing::error!(owner = %owner, address = %taken.address, network = %taken.network,
                    error = %e, "could not release the address a concurrent attempt took second; the owner holds two until released");
                race_counter(&caller.backend, "release_failed");
            }
        }
        self.invalidate(&caller.backend);
        Ok(first)
    }
}

/// Counts what [`Ipam::converge`] found when an owner held more than one record in a network:
/// `kept` (ours was first), `released` (ours was later and is given back), `release_failed`.
fn race_counter(backend: &str, outcome: &'static str) {
    metrics::counter!("ipamgw_allocation_races_total",
        "backend" => backend.to_owned(), "outcome" => outcome)
    .increment(1);
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Mutex;
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    use super::*;
    use crate::backends::CallContext;
    use crate::domain::{AllocateIn, BackendStatus, Lookup, RecordDetails};
    use crate::service::test_support::{caller, ip, wanted};

    /// A backend whose other replica is scripted: one network `net`, records with numeric
    /// references handed out in writing order, ranked by them as phpIPAM's address ids are
    /// (`PhpipamBackend::first_written`). `rival` is a record another replica writes for the
    /// same owner while our allocation is in flight (it lands before our re-lookup); the
    /// `fail_*` switches make the named call fail as an unreachable backend does.
    #[derive(Debug, Default)]
    struct Racing {
        records: Mutex<Vec<AllocationInfo>>,
        next: Mutex<u32>,
        rival: Mutex<Option<AllocationInfo>>,
        conflict: std::sync::atomic::AtomicBool,
        fail_lookup_after_allocate: std::sync::atomic::AtomicBool,
        fail_release: std::sync::atomic::AtomicBool,
        allocated: std::sync::atomic::AtomicBool,
        lookups: std::sync::atomic::AtomicUsize,
        releases: Mutex<Vec<IpAddr>>,
    }

    fn record(owner: &str, address: &str, reference: u32) -> AllocationInfo {
        AllocationInfo {
            network: "net".into(),
            address: address.parse().expect("address"),
            owner: Some(Owner::parse(owner).expect("owner")),
            details: RecordDetails::default(),
            reference: Some(reference.to_string()),
        }
    }

    fn down() -> IpamError {
        IpamError::Unavailable {
            backend: "b".into(),
            detail: "connection refused".into(),
        }
    }

    impl Racing {
        fn holding(records: Vec<AllocationInfo>) -> Arc<Racing> {
            let r = Racing::default();
            *r.next.lock().expect("next") = 100;
            *r.records.lock().expect("records") = records;
            Arc::new(r)
        }

        fn held(&self) -> Vec<IpAddr> {
            let mut v: Vec<IpAddr> = self
                .records
                .lock()
                .expect("records")
                .iter()
                .map(|a| a.address)
                .collect();
            v.sort();
            v
        }
    }

    #[async_trait::async_trait]
    impl Backend for Racing {
        fn name(&self) -> &str {
            "b"
        }
        fn kind(&self) -> &'static str {
            "racing"
        }
        fn first_written(&self, a: &AllocationInfo, b: &AllocationInfo) -> std::cmp::Ordering {
            let id =
                |x: &AllocationInfo| x.reference.as_deref().and_then(|r| r.parse::<u32>().ok());
            id(a).cmp(&id(b))
        }
        async fn find_owner_in(
            &self,
            _cx: &CallContext,
            owner: &Owner,
            network: &str,
        ) -> IpamResult<Vec<AllocationInfo>> {
            self.lookups.fetch_add(1, SeqCst);
            if self.allocated.load(SeqCst) && self.fail_lookup_after_allocate.load(SeqCst) {
                return Err(down());
            }
            Ok(self
                .records
                .lock()
                .expect("records")
                .iter()
                .filter(|a| a.owner.as_ref() == Some(owner) && a.network == network)
                .cloned()
                .collect())
        }
        async fn check(&self, _cx: &CallContext) -> IpamResult<BackendStatus> {
            Err(IpamError::Unsupported("check".into()))
        }
        async fn networks(&self, _cx: &CallContext) -> IpamResult<Vec<crate::domain::NetworkInfo>> {
            Ok(Vec::new())
        }
        async fn blocks(&self, _cx: &CallContext) -> IpamResult<Vec<crate::domain::BlockInfo>> {
            Ok(Vec::new())
        }
        async fn allocate(
            &self,
            _cx: &CallContext,
            req: &AllocateIn,
        ) -> IpamResult<AllocationInfo> {
            if let Some(rival) = self.rival.lock().expect("rival").take() {
                self.records.lock().expect("records").push(rival);
            }
            if self.conflict.load(SeqCst) {
                return Err(IpamError::Conflict(
                    "the record 'vm-1' already exists".into(),
                ));
            }
            let mut next = self.next.lock().expect("next");
            *next += 1;
            let taken = AllocationInfo {
                network: req.network.clone(),
                address: req.address.unwrap_or_else(|| {
                    IpAddr::from([10, 0, 0, u8::try_from(*next % 250).unwrap_or(1)])
                }),
                owner: Some(req.owner.clone()),
                details: req.details.clone(),
                reference: Some(next.to_string()),
            };
            self.records.lock().expect("records").push(taken.clone());
            self.allocated.store(true, SeqCst);
            Ok(taken)
        }
        async fn find(
            &self,
            _cx: &CallContext,
            _lookup: &Lookup,
        ) -> IpamResult<Vec<AllocationInfo>> {
            Err(IpamError::Unsupported(
                "allocation looks owners up per network".into(),
            ))
        }
        async fn release(
            &self,
            _cx: &CallContext,
            _network: &str,
            address: IpAddr,
        ) -> IpamResult<()> {
            if self.fail_release.load(SeqCst) {
                return Err(down());
            }
            self.releases.lock().expect("releases").push(address);
            self.records
                .lock()
                .expect("records")
                .retain(|a| a.address != address);
            Ok(())
        }
    }

    fn racing_ipam(b: &Arc<Racing>) -> Ipam {
        let backend: Arc<dyn Backend> = b.clone();
        Ipam::new(vec![backend], Duration::from_secs(60))
    }

    #[tokio::test]
    async fn a_record_written_after_another_replicas_is_released_and_the_first_is_the_answer() {
        let b = Racing::holding(Vec::new());
        *b.rival.lock().expect("rival") = Some(record("vm-1", "10.0.0.9", 50));
        let got = racing_ipam(&b)
            .allocate(&caller(), &wanted("vm-1", None))
            .await
            .expect("allocates");
        assert_eq!(
            got.address,
            ip("10.0.0.9"),
            "the first-written record is the answer"
        );
        assert_eq!(
            b.held(),
            vec![ip("10.0.0.9")],
            "ours (10.0.0.101) was released"
        );
        assert_eq!(
            *b.releases.lock().expect("releases"),
            vec![ip("10.0.0.101")]
        );
    }

    #[tokio::test]
    async fn a_record_written_before_another_replicas_stays_and_the_other_is_left_to_it() {
        let b = Racing::holding(Vec::new());
        *b.rival.lock().expect("rival") = Some(record("vm-1", "10.0.0.9", 500));
        let got = racing_ipam(&b)
            .allocate(&caller(), &wanted("vm-1", None))
            .await
            .expect("allocates");
        assert_eq!(got.address, ip("10.0.0.101"), "ours was written first");
        assert!(
            b.releases.lock().expect("releases").is_empty(),
            "the later record is its writer's to release"
        );
        assert_eq!(b.held(), vec![ip("10.0.0.9"), ip("10.0.0.101")]);
    }

    #[tokio::test]
    async fn an_owner_already_holding_two_records_gets_the_first_written_and_none_is_released() {
        let b = Racing::holding(vec![
            record("vm-1", "10.0.0.3", 60),
            record("vm-1", "10.0.0.7", 40),
        ]);
        let ipam = racing_ipam(&b);
        for _ in 0..2 {
            let got = ipam
                .allocate_held_first(&caller(), &wanted("vm-1", None))
                .await
                .expect("held");
            assert_eq!(
                got.address,
                ip("10.0.0.7"),
                "reference 40 was written first"
            );
        }
        assert!(!b.allocated.load(SeqCst), "nothing new taken");
        assert_eq!(
            b.held().len(),
            2,
            "a later record may be an attempt still in flight"
        );
    }

    #[tokio::test]
    async fn when_the_second_lookup_fails_the_error_is_the_answer_and_the_address_stays_the_owners()
    {
        let b = Racing::holding(Vec::new());
        b.fail_lookup_after_allocate.store(true, SeqCst);
        let err = racing_ipam(&b)
            .allocate(&caller(), &wanted("vm-1", None))
            .await
            .expect_err("the lookup failed");
        assert_eq!(err, down());
        assert_eq!(
            b.held(),
            vec![ip("10.0.0.101")],
            "not released: it may be the first"
        );
        b.fail_lookup_after_allocate.store(false, SeqCst);
        let retry = racing_ipam(&b)
            .allocate(&caller(), &wanted("vm-1", None))
            .await
            .expect("retry");
        assert_eq!(retry.address, ip("10.0.0.101"), "a retry finds it");
    }

    #[tokio::test]
    async fn when_the_later_record_cannot_be_released_the_answer_is_still_the_first() {
        let b = Racing::holding(Vec::new());
        *b.rival.lock().expect("rival") = Some(record("vm-1", "10.0.0.9", 50));
        b.fail_release.store(true, SeqCst);
        let got = racing_ipam(&b)
            .allocate(&caller(), &wanted("vm-1", None))
            .await
            .expect("answers");
        assert_eq!(got.address, ip("10.0.0.9"));
        assert_eq!(
            b.held(),
            vec![ip("10.0.0.9"), ip("10.0.0.101")],
            "the owner holds both until released"
        );
    }

    #[tokio::test]
    async fn a_conflict_from_another_replicas_attempt_answers_with_its_record() {
        let b = Racing::holding(Vec::new());
        *b.rival.lock().expect("rival") = Some(record("vm-1", "10.0.0.9", 50));
        b.conflict.store(true, SeqCst);
        let got = racing_ipam(&b)
            .allocate(&caller(), &wanted("vm-1", Some("10.0.0.9")))
            .await
            .expect("the other attempt's record");
        assert_eq!(got.address, ip("10.0.0.9"));
        // Someone else's conflict stays a conflict.
        let b = Racing::holding(vec![record("vm-2", "10.0.0.9", 50)]);
        b.conflict.store(true, SeqCst);
        let err = racing_ipam(&b)
            .allocate(&caller(), &wanted("vm-1", Some("10.0.0.9")))
            .await
            .expect_err("taken by another owner");
        assert_eq!(
            err,
            IpamError::Conflict("the record 'vm-1' already exists".into())
        );
        // The owner holds another address there: not the one asked for.
        let b = Racing::holding(Vec::new());
        *b.rival.lock().expect("rival") = Some(record("vm-1", "10.0.0.8", 50));
        b.conflict.store(true, SeqCst);
        let err = racing_ipam(&b)
            .allocate(&caller(), &wanted("vm-1", Some("10.0.0.9")))
            .await
            .expect_err("holds another");
        assert!(
            matches!(&err, IpamError::Conflict(m) if m.contains("already holds 10.0.0.8")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn taking_another_address_on_purpose_does_not_converge() {
        let b = Racing::holding(vec![record("vm-1", "10.0.0.9", 50)]);
        let got = racing_ipam(&b)
            .allocate_another(&caller(), &wanted("vm-1", None))
            .await
            .expect("another");
        assert_eq!(got.address, ip("10.0.0.101"));
        assert_eq!(b.lookups.load(SeqCst), 0, "no lookup, before or after");
        assert_eq!(b.held().len(), 2);
    }
}
