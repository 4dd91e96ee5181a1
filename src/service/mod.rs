//! The IPAM core: where correctness lives.
//!
//! - Listings are cached per (backend, caller scope) in moka with `try_get_with`, so N concurrent
//!   misses cost one backend call; errors are not cached; a change to a backend drops its listings.
//! - Allocation is serialised per owner inside this process (so an owner lookup and the allocation
//!   after it cannot race with a retry of the same request). Between owners, the backend's own
//!   atomic primitive decides (redb write transaction, Infoblox `next_available_ip` in the create); where that
//!   step is not atomic (phpIPAM `first_free` looks up, then inserts), this process also
//!   serialises its allocations per network, so only other replicas can race it, and a lost race
//!   is retried by the backend.
//! - An owner that already holds an address in a candidate network gets that address back, so a
//!   retried request never takes a second one. A retry running on another replica at the same
//!   time may still take one; right after taking an address, each replica looks the owner up
//!   again and keeps the record written first (`Ipam::converge`), so both answer the same.
//! - A batch either fully succeeds or is rolled back in reverse order, and the original error is
//!   what the caller sees: one rule ([`Batch`]) for every contract.
//!
//! One file per seam: `listing` (the network snapshot and its caches), `allocate` (one address,
//! idempotency, convergence), `batch` (all or nothing), `records` (find, release, update), `carve`
//! (on-demand networks), `dns` (the registry and the DNS hooks), `locks` (what this process
//! serialises), `status` (ping, check). This file holds [`Ipam`] itself: its composition and the
//! backend lookup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::backends::{Backend, CallContext};
use crate::domain::{
    Allocation, AllocationId, AllocationInfo, IpamError, IpamResult, Network, NetworkId, Owner,
    RecordDetails,
};

mod allocate;
mod batch;
mod carve;
mod dns;
mod listing;
mod locks;
mod records;
mod status;
#[cfg(test)]
mod test_support;

pub use batch::{Batch, BatchFailure, BatchMode, Rollback, Taken};
pub use dns::DnsRegistry;
pub use locks::{KeyedGuard, KeyedLocks, LockKey};

/// Who is calling, resolved by the authentication layer. Request handlers get one only behind
/// it: the extractor is in `auth::gate`.
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
    /// More DNS names for the address besides `details.hostname`, which comes first and gets
    /// the PTR: these get A/AAAA records only. Checked, registered and removed with the host
    /// name when DNS is attached (Avi: every fqdn after the first); empty for vRA and the native
    /// API.
    pub aliases: Vec<String>,
}

type ListingKey = (String, String);

/// How many listings each of the two listing caches holds: one per backend for gateway clients,
/// plus one per passthrough user.
const LISTING_CAPACITY: u64 = 1024;

pub struct Ipam {
    backends: HashMap<String, Arc<dyn Backend>>,
    listings: Cache<ListingKey, Arc<Vec<Network>>>,
    /// The last listing loaded per key, kept for the listing TTL even when a change drops the
    /// cached one: it still describes the networks (CIDR, gateway, DNS) for answers that need no
    /// fresh counts. Same TTL and capacity as `listings` (`cache.networks_ttl_secs`, 1,024), so
    /// passthrough users cannot grow it without bound.
    last_listing: Cache<ListingKey, Arc<Vec<Network>>>,
    locks: KeyedLocks,
    dns: DnsRegistry,
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
        Self::with_listing_capacity(backends, listing_ttl, LISTING_CAPACITY)
    }

    fn with_listing_capacity(
        backends: Vec<Arc<dyn Backend>>,
        listing_ttl: Duration,
        capacity: u64,
    ) -> Self {
        let listings = Cache::builder()
            .name("network_listings")
            .max_capacity(capacity)
            .time_to_live(listing_ttl)
            .support_invalidation_closures()
            .build();
        let last_listing = Cache::builder()
            .name("last_network_listings")
            .max_capacity(capacity)
            .time_to_live(listing_ttl)
            .build();
        Ipam {
            backends: backends
                .into_iter()
                .map(|b| (b.name().to_owned(), b))
                .collect(),
            listings,
            last_listing,
            locks: KeyedLocks::default(),
            dns: DnsRegistry::default(),
        }
    }

    /// Registers the names of allocated addresses in DNS ([`DnsRegistry`]).
    pub fn with_dns(mut self, dns: DnsRegistry) -> Self {
        self.dns = dns;
        self
    }

    pub fn dns(&self) -> &DnsRegistry {
        &self.dns
    }

    pub fn backend(&self, name: &str) -> IpamResult<&Arc<dyn Backend>> {
        self.backends
            .get(name)
            .ok_or_else(|| IpamError::NotFound(format!("backend {name}")))
    }

    pub fn backend_names(&self) -> impl Iterator<Item = &str> {
        self.backends.keys().map(String::as_str)
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
            aliases: a.details.aliases,
            reference: a.reference,
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
