//! The IPAM core: where correctness lives.
//!
//! - Listings are cached per (backend, caller scope) in moka with `try_get_with`, so N concurrent
//!   misses cost one backend call; errors are not cached; a change to a backend drops its listings.
//! - Allocation is serialised per owner inside this process (so an owner lookup and the allocation
//!   after it cannot race with a retry of the same request). Between owners, the backend's own
//!   atomic primitive decides (redb write transaction, Infoblox `func:nextavailableip`); where that
//!   step is not atomic (phpIPAM `first_free` looks up, then inserts), this process also
//!   serialises its allocations per network, so only other replicas can race it, and a lost race
//!   is retried by the backend.
//! - An owner that already holds an address in a candidate network gets that address back, so a
//!   retried request never takes a second one.
//! - A batch either fully succeeds or is rolled back in reverse order, and the original error is
//!   what the caller sees.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::backends::{Backend, CallContext, Claim};
use crate::domain::{
    AllocateIn, Allocation, AllocationId, AllocationInfo, BackendStatus, Block, CarveRequest,
    IpamError, IpamResult, Lookup, Network, NetworkFilter, NetworkId, Owner, RecordChanges,
    RecordDetails,
};

/// Who is calling, resolved by the server's auth layer.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Client name (or the passthrough user name).
    pub name: String,
    /// The backend this caller is bound to.
    pub backend: String,
    pub cx: CallContext,
}

impl Caller {
    /// Listings are shared by every gateway client of a backend; passthrough users each see what
    /// the backend shows them, so each gets their own cache entry.
    fn scope(&self) -> String {
        match &self.cx.credentials {
            Some(c) => format!("user:{}", c.username),
            None => String::new(),
        }
    }
}

/// One address wanted: who for, where (candidate networks in order), optionally which address.
#[derive(Debug, Clone)]
pub struct AllocationRequest {
    pub owner: Owner,
    pub networks: Vec<NetworkId>,
    pub address: Option<IpAddr>,
    pub details: RecordDetails,
}

/// The failure of a batch: the original error, which item failed, and any rollback trouble.
#[derive(Debug, Clone)]
pub struct BatchFailure {
    pub index: usize,
    pub error: IpamError,
    /// Addresses that could not be given back during rollback (logged; reported for operators).
    pub rollback_failures: Vec<String>,
}

type ListingKey = (String, String);

/// A listing and when it was loaded.
type LoadedListing = (Instant, Arc<Vec<Network>>);

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

pub struct Ipam {
    backends: HashMap<String, Arc<dyn Backend>>,
    listings: Cache<ListingKey, Arc<Vec<Network>>>,
    /// The last listing loaded per key and when, kept when a change drops the cached one: it
    /// still describes the networks (CIDR, gateway, DNS) for answers that need no fresh counts.
    last_listing: Mutex<HashMap<ListingKey, LoadedListing>>,
    listing_ttl: Duration,
    locks: KeyedLocks,
}

impl std::fmt::Debug for Ipam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipam")
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Ipam {
    pub fn new(backends: Vec<Arc<dyn Backend>>, listing_ttl: Duration) -> Self {
        let listings = Cache::builder()
            .name("network_listings")
            .max_capacity(1024)
            .time_to_live(listing_ttl)
            .support_invalidation_closures()
            .build();
        Ipam {
            backends: backends
                .into_iter()
                .map(|b| (b.name().to_owned(), b))
                .collect(),
            listings,
            last_listing: Mutex::new(HashMap::new()),
            listing_ttl,
            locks: KeyedLocks::default(),
        }
    }

    pub fn backend(&self, name: &str) -> IpamResult<&Arc<dyn Backend>> {
        self.backends
            .get(name)
            .ok_or_else(|| IpamError::NotFound(format!("backend {name}")))
    }

    pub fn backend_names(&self) -> impl Iterator<Item = &str> {
        self.backends.keys().map(String::as_str)
    }

    /// The whole listing for a caller, from cache when warm.
    pub async fn network_snapshot(&self, caller: &Caller) -> IpamResult<Arc<Vec<Network>>> {
        let backend = self.backend(&caller.backend)?.clone();
        let key = (caller.backend.clone(), caller.scope());
        let mut missed = false;
        let result = self
            .listings
            .try_get_with(key.clone(), async {
                missed = true;
                let infos =
                    timed(&caller.backend, "networks", backend.networks(&caller.cx)).await?;
                let mut nets: Vec<Network> = infos
                    .into_iter()
                    .map(|info| Network {
                        id: NetworkId::new(&caller.backend, &info.backend_id),
                        info,
                    })
                    .collect();
                nets.sort_by(|a, b| a.id.cmp(&b.id));
                let nets = Arc::new(nets);
                self.last_listing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (Instant::now(), nets.clone()));
                Ok::<_, IpamError>(nets)
            })
            .await;
        metrics::counter!("ipamgw_cache_requests_total",
            "cache" => "networks",
            "result" => if missed { "miss" } else { "hit" })
        .increment(1);
        result.map_err(|e: Arc<IpamError>| (*e).clone())
    }

    pub async fn networks(
        &self,
        caller: &Caller,
        filter: &NetworkFilter,
    ) -> IpamResult<Vec<Network>> {
        let all = self.network_snapshot(caller).await?;
        Ok(all
            .iter()
            .filter(|n| filter.matches(&n.info))
            .cloned()
            .collect())
    }

    /// One network by id, reloading the listing once if the cached one does not have it.
    pub async fn network(&self, caller: &Caller, id: &NetworkId) -> IpamResult<Network> {
        self.check_route(caller, id, "network")?;
        if let Some(n) = self
            .network_snapshot(caller)
            .await?
            .iter()
            .find(|n| &n.id == id)
        {
            return Ok(n.clone());
        }
        self.invalidate(&caller.backend);
        self.network_snapshot(caller)
            .await?
            .iter()
            .find(|n| &n.id == id)
            .cloned()
            .ok_or_else(|| IpamError::NotFound(format!("network {id}")))
    }

    /// One network as described by the last listing loaded within the listing TTL, even when a
    /// change (an allocation) has dropped the cached listing since; otherwise as
    /// [`Ipam::network`]. For answers that describe a network's settings (CIDR, gateway, DNS),
    /// which changes to addresses do not touch: its `free` count may be behind.
    pub async fn network_settings(&self, caller: &Caller, id: &NetworkId) -> IpamResult<Network> {
        self.check_route(caller, id, "network")?;
        let key = (caller.backend.clone(), caller.scope());
        let last = self
            .last_listing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|(at, _)| at.elapsed() < self.listing_ttl)
            .map(|(_, nets)| nets.clone());
        if let Some(n) = last
            .as_ref()
            .and_then(|nets| nets.iter().find(|n| &n.id == id))
        {
            return Ok(n.clone());
        }
        self.network(caller, id).await
    }

    pub async fn blocks(&self, caller: &Caller) -> IpamResult<Vec<Block>> {
        let backend = self.backend(&caller.backend)?;
        let infos = timed(&caller.backend, "blocks", backend.blocks(&caller.cx)).await?;
        Ok(infos
            .into_iter()
            .map(|info| Block {
                id: NetworkId::new(&caller.backend, &info.backend_id),
                info,
            })
            .collect())
    }

    fn invalidate(&self, backend: &str) {
        let backend = backend.to_owned();
        // Only fails when invalidation closures are not enabled, and they are (see `new`).
        let _ = self
            .listings
            .invalidate_entries_if(move |k, _| k.0 == backend);
    }

    fn check_route(&self, caller: &Caller, id: &NetworkId, field: &str) -> IpamResult<()> {
        if id.backend() != caller.backend {
            return Err(IpamError::NotFound(format!(
                "{field} {id} is not served by backend {}",
                caller.backend
            )));
        }
        Ok(())
    }

    fn to_allocation(&self, backend: &str, a: AllocationInfo) -> Allocation {
        let network_id = NetworkId::new(backend, &a.network);
        Allocation {
            id: AllocationId::new(&network_id, a.address),
            network_id,
            address: a.address,
            owner: a.owner,
            hostname: a.details.hostname,
            description: a.details.description,
            mac: a.details.mac,
            reference: a.reference,
        }
    }

    /// Takes one address for an owner, trying candidate networks in order. Idempotent per owner
    /// and network: an owner that already holds an address there gets it back.
    pub async fn allocate(
        &self,
        caller: &Caller,
        req: &AllocationRequest,
    ) -> IpamResult<Allocation> {
        self.allocate_inner(caller, req, Reuse::InOrder).await
    }

    /// Like [`Ipam::allocate`], but an owner that already holds an address in any of the
    /// candidate networks gets that one back, whatever the candidates' order (the retry of a
    /// request whose first candidate was full when it first ran).
    pub async fn allocate_held_first(
        &self,
        caller: &Caller,
        req: &AllocationRequest,
    ) -> IpamResult<Allocation> {
        self.allocate_inner(caller, req, Reuse::HeldFirst).await
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
        self.allocate_inner(caller, req, Reuse::Never).await
    }

    async fn allocate_inner(
        &self,
        caller: &Caller,
        req: &AllocationRequest,
        reuse: Reuse,
    ) -> IpamResult<Allocation> {
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
            .lock(&format!("owner\u{0}{}\u{0}{}", caller.backend, req.owner))
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
        let held = if reuse == Reuse::Never || one_step {
            Vec::new()
        } else {
            timed(
                &caller.backend,
                "find",
                backend.find(&caller.cx, &Lookup::Owner(req.owner.clone())),
            )
            .await?
        };
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
            Ok(self.to_allocation(&caller.backend, existing))
        };
        if reuse == Reuse::HeldFirst
            && let Some((existing, id)) = held.iter().find_map(|a| {
                req.networks
                    .iter()
                    .find(|id| id.backend_id() == a.network)
                    .map(|id| (a.clone(), id))
            })
        {
            return returning(existing, id);
        }
        let mut exhausted = Vec::new();
        let mut outside = 0usize;
        for id in &req.networks {
            let local = id.backend_id();
            if let Some(existing) = held.iter().find(|a| a.network == local) {
                return returning(existing.clone(), id);
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
                Some(self.locks.lock(&format!("network\u{0}{id}")).await)
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
                    return Ok(self.to_allocation(&caller.backend, a));
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

    /// Allocates every request or none: on the first failure, what was taken is given back in
    /// reverse order and the original error is returned.
    pub async fn allocate_batch(
        &self,
        caller: &Caller,
        reqs: &[AllocationRequest],
    ) -> Result<Vec<Allocation>, BatchFailure> {
        let mut done: Vec<Allocation> = Vec::with_capacity(reqs.len());
        for (index, req) in reqs.iter().enumerate() {
            match self.allocate(caller, req).await {
                Ok(a) => done.push(a),
                Err(error) => {
                    let rollback_failures = self.roll_back(caller, &done).await;
                    return Err(BatchFailure {
                        index,
                        error,
                        rollback_failures,
                    });
                }
            }
        }
        Ok(done)
    }

    /// Gives allocations back, last first. Returns what could not be released (and logs it).
    pub async fn roll_back(&self, caller: &Caller, done: &[Allocation]) -> Vec<String> {
        let mut failures = Vec::new();
        for a in done.iter().rev() {
            if let Err(e) = self.release(caller, &a.network_id, a.address).await {
                tracing::error!(address = %a.address, network = %a.network_id, error = %e,
                    "rollback could not release an address");
                failures.push(format!("{} in {}: {e}", a.address, a.network_id));
            }
        }
        failures
    }

    pub async fn find(&self, caller: &Caller, lookup: &Lookup) -> IpamResult<Vec<Allocation>> {
        let backend = self.backend(&caller.backend)?;
        let found = timed(&caller.backend, "find", backend.find(&caller.cx, lookup)).await?;
        Ok(found
            .into_iter()
            .map(|a| self.to_allocation(&caller.backend, a))
            .collect())
    }

    /// The allocation at an address in a network, if any.
    pub async fn get(
        &self,
        caller: &Caller,
        network: &NetworkId,
        address: IpAddr,
    ) -> IpamResult<Allocation> {
        self.check_route(caller, network, "network")?;
        let lookup = Lookup::Address {
            address,
            network: Some(network.backend_id()),
        };
        self.find(caller, &lookup)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                IpamError::NotFound(format!("{address} is not allocated in network {network}"))
            })
    }

    /// Gives an address back; an address that is already free is not an error.
    pub async fn release(
        &self,
        caller: &Caller,
        network: &NetworkId,
        address: IpAddr,
    ) -> IpamResult<()> {
        self.check_route(caller, network, "network")?;
        let backend = self.backend(&caller.backend)?;
        let _guard = self.locks.lock(network.as_str()).await;
        timed(
            &caller.backend,
            "release",
            backend.release(&caller.cx, &network.backend_id(), address),
        )
        .await?;
        self.invalidate(&caller.backend);
        Ok(())
    }

    /// Releases everything an owner holds; returns what was released.
    pub async fn release_owner(
        &self,
        caller: &Caller,
        owner: &Owner,
    ) -> IpamResult<Vec<Allocation>> {
        let held = self.find(caller, &Lookup::Owner(owner.clone())).await?;
        for a in &held {
            self.release(caller, &a.network_id, a.address).await?;
        }
        Ok(held)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        network: &NetworkId,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<Allocation> {
        self.check_route(caller, network, "network")?;
        let backend = self.backend(&caller.backend)?;
        let _guard = self.locks.lock(network.as_str()).await;
        let a = timed(
            &caller.backend,
            "update",
            backend.update(&caller.cx, &network.backend_id(), address, changes),
        )
        .await?;
        Ok(self.to_allocation(&caller.backend, a))
    }

    /// Carves a network from a block; idempotent per owner and block.
    pub async fn allocate_network(
        &self,
        caller: &Caller,
        block: &NetworkId,
        prefix_len: u8,
        owner: &Owner,
        name: Option<String>,
        subnet: Option<ipnet::IpNet>,
    ) -> IpamResult<Network> {
        self.check_route(caller, block, "block")?;
        let backend = self.backend(&caller.backend)?;
        let block_local = block.backend_id();
        let _guard = self.locks.lock(block.as_str()).await;
        let current = timed(&caller.backend, "networks", backend.networks(&caller.cx)).await?;
        if let Some(existing) = current.into_iter().find(|n| {
            n.block.as_deref() == Some(block_local.as_str()) && n.owner.as_ref() == Some(owner)
        }) {
            // The retry of the same request gets the same network; a different request from the
            // same owner is a conflict, not silently the old network.
            let wanted = match subnet {
                Some(net) => net.trunc() == existing.cidr,
                None => existing.cidr.prefix_len() == prefix_len,
            };
            if !wanted {
                let asked = subnet.map_or_else(|| format!("a /{prefix_len}"), |n| n.to_string());
                return Err(IpamError::Conflict(format!(
                    "owner {owner} already holds network {} ({}) in block {block}, not {asked}",
                    existing.name, existing.cidr
                )));
            }
            return Ok(Network {
                id: NetworkId::new(&caller.backend, &existing.backend_id),
                info: existing,
            });
        }
        let req = CarveRequest {
            block: block_local,
            prefix_len,
            owner: owner.clone(),
            name,
            subnet,
        };
        let info = timed(
            &caller.backend,
            "allocate_network",
            backend.allocate_network(&caller.cx, &req),
        )
        .await?;
        self.invalidate(&caller.backend);
        Ok(Network {
            id: NetworkId::new(&caller.backend, &info.backend_id),
            info,
        })
    }

    pub async fn release_network(&self, caller: &Caller, network: &NetworkId) -> IpamResult<()> {
        self.check_route(caller, network, "network")?;
        let backend = self.backend(&caller.backend)?;
        let _guard = self.locks.lock(network.as_str()).await;
        timed(
            &caller.backend,
            "release_network",
            backend.release_network(&caller.cx, &network.backend_id()),
        )
        .await?;
        self.invalidate(&caller.backend);
        Ok(())
    }

    /// Credentials and reachability of one backend, with the gateway's own credentials.
    /// Reachable and authenticated, cheaply (see [`Backend::ping`]); the backend's kind.
    pub async fn ping(&self, backend: &str) -> IpamResult<&'static str> {
        let b = self.backend(backend)?;
        timed(backend, "ping", b.ping(&CallContext::default())).await?;
        Ok(b.kind())
    }

    /// Credentials, reachability and set-up of one backend ([`Backend::check`]), with the
    /// gateway's own credentials. Set-up problems are an error here
    /// ([`BackendStatus::setup_error`]): what vRA's validate-endpoint and Avi's TestLogin report.
    pub async fn check(&self, backend: &str) -> IpamResult<BackendStatus> {
        let b = self.backend(backend)?;
        let status = timed(backend, "check", b.check(&CallContext::default())).await?;
        match status.setup_error() {
            Some(e) => Err(e),
            None => Ok(status),
        }
    }
}

/// Records backend call latency by backend, operation and outcome.
async fn timed<T>(
    backend: &str,
    op: &'static str,
    fut: impl std::future::Future<Output = IpamResult<T>>,
) -> IpamResult<T> {
    let started = Instant::now();
    let out = fut.await;
    let outcome = match &out {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    metrics::histogram!("ipamgw_backend_call_duration_seconds",
        "backend" => backend.to_owned(), "op" => op, "outcome" => outcome)
    .record(started.elapsed().as_secs_f64());
    out
}

/// Async mutexes by key, created on demand and dropped when nobody holds or waits for them.
#[derive(Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

pub struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    key: String,
    mutex: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyedGuard<'_> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_owned()).or_default().clone()
        };
        let guard = mutex.clone().lock_owned().await;
        KeyedGuard {
            locks: self,
            key: key.to_owned(),
            mutex,
            guard: Some(guard),
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        // The map's Arc and ours: nobody else holds or waits for this lock.
        if Arc::strong_count(&self.mutex) == 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keyed_locks_serialise_one_key_and_clean_up() {
        let locks = Arc::new(KeyedLocks::default());
        let counter = Arc::new(Mutex::new((0u32, 0u32))); // (inside now, max inside)
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (locks, counter) = (locks.clone(), counter.clone());
            tasks.push(tokio::spawn(async move {
                let _g = locks.lock("net-a").await;
                {
                    let mut c = counter.lock().expect("counter");
                    c.0 += 1;
                    c.1 = c.1.max(c.0);
                }
                tokio::task::yield_now().await;
                counter.lock().expect("counter").0 -= 1;
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(
            counter.lock().expect("counter").1,
            1,
            "never two holders at once"
        );
        assert!(locks.is_empty(), "entries are dropped when unused");
    }

    #[tokio::test]
    async fn different_keys_do_not_block_each_other() {
        let locks = KeyedLocks::default();
        let _a = locks.lock("a").await;
        let b = tokio::time::timeout(Duration::from_secs(1), locks.lock("b")).await;
        assert!(b.is_ok());
    }
}
