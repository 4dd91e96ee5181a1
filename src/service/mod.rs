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

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::backends::{Backend, CallContext, Claim};
use crate::dns::{DnsError, DnsUpdater, OnFailure};
use crate::domain::{
    AllocateIn, Allocation, AllocationId, AllocationInfo, BackendStatus, Block, CarveRequest,
    IpamError, IpamResult, Lookup, Network, NetworkFilter, NetworkId, Owner, RecordChanges,
    RecordDetails,
};

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
    /// The last listing loaded per key, kept for the listing TTL even when a change drops the
    /// cached one: it still describes the networks (CIDR, gateway, DNS) for answers that need no
    /// fresh counts. Same TTL and capacity as `listings` (`cache.networks_ttl_secs`, 1,024), so
    /// passthrough users cannot grow it without bound.
    last_listing: Cache<ListingKey, Arc<Vec<Network>>>,
    locks: KeyedLocks,
    dns: DnsRegistry,
}

/// Which DNS section (`[dns.<name>]`) registers the names of each backend's addresses, and of
/// the networks that override their backend's (`backends.<b>.networks[i].dns`).
#[derive(Debug, Clone, Default)]
pub struct DnsRegistry {
    by_backend: HashMap<String, AttachedDns>,
}

#[derive(Debug, Clone, Default)]
struct AttachedDns {
    default: Option<DnsUpdater>,
    /// By backend-local network id.
    networks: HashMap<String, DnsUpdater>,
}

impl DnsRegistry {
    /// From validated settings (`Settings::dns` and `Settings::dns_attach`, which only name
    /// sections that exist).
    pub fn from_settings(
        sections: &[crate::dns::DnsSettings],
        attach: &std::collections::BTreeMap<String, crate::config::DnsAttach>,
    ) -> Self {
        let updaters: HashMap<&str, DnsUpdater> = sections
            .iter()
            .map(|s| (s.name.as_str(), DnsUpdater::new(s.clone())))
            .collect();
        let get = |n: &str| updaters.get(n).cloned();
        let by_backend = attach
            .iter()
            .map(|(backend, a)| {
                let entry = AttachedDns {
                    default: a.default.as_deref().and_then(get),
                    networks: a
                        .networks
                        .iter()
                        .filter_map(|(id, d)| get(d).map(|u| (id.clone(), u)))
                        .collect(),
                };
                (backend.clone(), entry)
            })
            .collect();
        DnsRegistry { by_backend }
    }

    /// The updater for an address of `network` (backend-local id) on `backend`, if any.
    pub fn updater(&self, backend: &str, network: &str) -> Option<&DnsUpdater> {
        let a = self.by_backend.get(backend)?;
        a.networks.get(network).or(a.default.as_ref())
    }

    fn attached(&self, backend: &str) -> bool {
        self.by_backend
            .get(backend)
            .is_some_and(|a| a.default.is_some() || !a.networks.is_empty())
    }

    /// Every section attached to `backend` (its own and its networks'), once each.
    pub fn sections(&self, backend: &str) -> Vec<DnsUpdater> {
        let mut out: Vec<DnsUpdater> = Vec::new();
        if let Some(a) = self.by_backend.get(backend) {
            for u in a.default.iter().chain(a.networks.values()) {
                if !out.iter().any(|o| o.settings().name == u.settings().name) {
                    out.push(u.clone());
                }
            }
        }
        out
    }
}

/// A DNS failure as the caller sees it: the server's answer, naming the zone. A refusal or a
/// failed exchange is a 502 (the DNS server is the gateway's upstream), no answer a 504, and a
/// name no configured zone holds a 400 naming the field.
fn dns_error(section: &str, e: DnsError) -> IpamError {
    match e {
        DnsError::Name(n) => IpamError::invalid(n.field, n.why),
        DnsError::Timeout { zone, after, .. } => IpamError::Timeout {
            backend: format!("DNS (dns.{section}, zone `{zone}`)"),
            seconds: after.as_secs().max(1),
        },
        other => IpamError::Upstream {
            backend: format!("DNS (dns.{section})"),
            status: 502,
            detail: other.to_string(),
        },
    }
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

    /// The fully qualified DNS name for `host` in `network` (qualified with the network's
    /// domain), or a 400 naming `field`.
    async fn dns_name(
        &self,
        caller: &Caller,
        network: &NetworkId,
        field: &str,
        host: &str,
    ) -> IpamResult<(String, Option<ipnet::IpNet>)> {
        let info = self
            .network_snapshot(caller)
            .await
            .ok()
            .and_then(|l| l.iter().find(|n| &n.id == network).map(|n| n.info.clone()));
        let domain = info.as_ref().and_then(|i| i.dns_domain.clone());
        let name = crate::dns::names::qualify(field, host, "domain", domain.as_deref())
            .map_err(|e| IpamError::invalid(e.field, e.why))?;
        Ok((name, info.map(|i| i.cidr)))
    }

    /// Applies the failure policy of `updater` to a DNS outcome: `required = true` turns a
    /// failure into the caller's error; otherwise it is logged (with the request's span, which
    /// carries its id) and counted, and the operation stands.
    fn dns_policy(
        updater: &DnsUpdater,
        what: &str,
        address: IpAddr,
        outcome: IpamResult<()>,
    ) -> IpamResult<()> {
        match outcome {
            Ok(()) => Ok(()),
            Err(e) if updater.settings().required => Err(e),
            Err(e) => {
                tracing::warn!(dns = %updater.settings().name, %address, error = %e,
                    "DNS {what} failed; not required (dns.{}.required = false), the operation stands",
                    updater.settings().name);
                Ok(())
            }
        }
    }

    /// The names of an address, fully qualified (each with the network's domain when it is a
    /// single label), the host name first: what [`DnsUpdater::set_names`] takes. Errors name
    /// `hostname` or `aliases[i]`.
    async fn dns_names(
        &self,
        caller: &Caller,
        network: &NetworkId,
        host: Option<&str>,
        aliases: &[String],
    ) -> IpamResult<(Vec<String>, Option<ipnet::IpNet>)> {
        let mut names: Vec<String> = Vec::new();
        let mut net = None;
        let given = host.map(|h| ("hostname".to_owned(), h)).into_iter().chain(
            aliases
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("aliases[{i}]"), a.as_str())),
        );
        for (field, name) in given {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let (q, n) = self.dns_name(caller, network, &field, name).await?;
            net = n;
            if !names.contains(&q) {
                names.push(q);
            }
        }
        Ok((names, net))
    }

    /// The CIDR of a network, for reverse zones derived from it.
    async fn cidr_of(&self, caller: &Caller, network: &NetworkId) -> Option<ipnet::IpNet> {
        self.network_snapshot(caller)
            .await
            .ok()?
            .iter()
            .find(|n| &n.id == network)
            .map(|n| n.info.cidr)
    }

    /// Like [`Ipam::dns_names`] for names an address already has (to delete or replace their
    /// records): a name that is not a DNS name or is in none of `updater`'s zones cannot have
    /// records the gateway wrote there, so it is skipped instead of failing the operation (a
    /// record whose host name predates DNS, or a name Avi no longer sends as it did).
    async fn held_names(
        &self,
        caller: &Caller,
        network: &NetworkId,
        updater: &DnsUpdater,
        host: Option<&str>,
        aliases: &[String],
    ) -> Vec<String> {
        let mut out = Vec::new();
        for name in host.into_iter().chain(aliases.iter().map(String::as_str)) {
            match self.dns_names(caller, network, Some(name), &[]).await {
                Ok((names, _)) => {
                    for n in names {
                        if updater.forward_zone("hostname", &n).is_ok() && !out.contains(&n) {
                            out.push(n);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(name, error = %e, "a name the address had is not registrable; skipped");
                }
            }
        }
        out
    }

    /// Checks DNS names before any address is taken, for an allocation in one of `networks`:
    /// each name (`(field, name)`) must be a valid DNS name and, qualified with a candidate
    /// network's domain, fall in a forward zone that network's `[dns.*]` section may update —
    /// for at least one candidate with DNS attached (the one the address ends up in is checked
    /// again when it is registered). A 400 naming the name's field. Without DNS on any
    /// candidate there is nothing to check.
    pub async fn check_names(
        &self,
        caller: &Caller,
        networks: &[NetworkId],
        names: &[(String, String)],
    ) -> IpamResult<()> {
        let with_dns: Vec<(&NetworkId, &DnsUpdater)> = networks
            .iter()
            .filter_map(|n| {
                self.dns
                    .updater(&caller.backend, &n.backend_id())
                    .map(|u| (n, u))
            })
            .collect();
        if with_dns.is_empty() {
            return Ok(());
        }
        let bad = |e: IpamError| {
            metrics::counter!("ipamgw_dns_updates_total", "result" => "bad_name").increment(1);
            e
        };
        for (field, name) in names {
            crate::dns::names::validate(field, name.trim())
                .map_err(|e| bad(IpamError::invalid(e.field, e.why)))?;
            let mut first_error = None;
            for (net, updater) in &with_dns {
                let fits = match self.dns_name(caller, net, field, name.trim()).await {
                    Ok((q, _)) => updater
                        .forward_zone(field, &q)
                        .map_err(|e| dns_error(&updater.settings().name, e)),
                    Err(e) => Err(e),
                };
                match fits {
                    Ok(_) => {
                        first_error = None;
                        break;
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(bad(e));
            }
        }
        Ok(())
    }

    /// Registers the names for an address this request got.
    ///
    /// With `required`, a failure is the caller's error, and what becomes of the address
    /// depends on where it came from:
    /// - `taken` (this request took it): the records this registration applied are undone and
    ///   the address is released, so nothing is left allocated (issue 12 §4).
    /// - not taken: the owner already held it, from an earlier attempt of the same request (a
    ///   retry), possibly one still running on another replica, or one that converged on the
    ///   address a concurrent attempt took first ([`Ipam::converge`]). It is **not** released,
    ///   and nothing registered is undone. That earlier attempt may have answered its caller
    ///   with this address (vRA or Avi then uses it) or may still be about to: releasing it
    ///   here would free an address in use — the next allocation hands it out twice — and
    ///   deleting its records would take a working machine's name away, all because a later
    ///   retry could not reach DNS. Kept, the worst case is an address held by the owner whose
    ///   records may be incomplete: the retry's caller sees the DNS error; a further retry
    ///   registers the names again (adds are idempotent, RFC 2136 §2.5.1) and gets the same
    ///   address; a deallocation releases it and deletes its records. A leak the owner can see
    ///   and release is safe; a double assignment is not.
    ///
    ///   What this does not cover: an attempt that took the address itself and fails its own
    ///   registration still releases it, even if a concurrent retry on another replica has
    ///   converged on that address and answered with it — the same window as the rollback of
    ///   an attempt `r1` belongs to, described at [`Ipam::converge`].
    async fn register_taken(
        &self,
        caller: &Caller,
        a: &Allocation,
        host: Option<&str>,
        aliases: &[String],
        taken: bool,
    ) -> IpamResult<()> {
        let Some(updater) = self
            .dns
            .updater(&caller.backend, &a.network_id.backend_id())
            .cloned()
        else {
            return Ok(());
        };
        let required = updater.settings().required;
        let outcome = async {
            let (names, net) = self.dns_names(caller, &a.network_id, host, aliases).await?;
            // All or nothing only for an address this request took and gives back on failure.
            let on_failure = if required && taken {
                OnFailure::Revert
            } else {
                OnFailure::Keep
            };
            updater
                .set_names(a.address, net, &[], &names, on_failure)
                .await
                .map_err(|e| dns_error(&updater.settings().name, e))
        }
        .await;
        if let Err(IpamError::InvalidInput { .. }) = &outcome {
            metrics::counter!("ipamgw_dns_updates_total", "result" => "bad_name").increment(1);
        }
        let outcome = Self::dns_policy(&updater, "registration", a.address, outcome);
        if let Err(e) = &outcome {
            if taken {
                // Give the address back, so nothing is left allocated (required = true).
                if let Err(r) = self.release_address(caller, &a.network_id, a.address).await {
                    tracing::error!(address = %a.address, network = %a.network_id, error = %r,
                        dns_error = %e, "could not release the address whose DNS registration failed");
                }
            } else {
                tracing::warn!(address = %a.address, network = %a.network_id, owner = ?a.owner,
                    dns_error = %e, "DNS registration of an address the owner already held failed; \
                    the address stays the owner's (see Ipam::register_taken)");
            }
        }
        outcome
    }

    /// The names of a request, checked before any address is taken (a 400 naming `hostname` or
    /// `aliases[i]`); `None` when there is nothing to register (no names, or no DNS attached).
    async fn check_request_names(
        &self,
        caller: &Caller,
        req: &AllocationRequest,
    ) -> IpamResult<Option<(Option<String>, Vec<String>)>> {
        if !self.dns.attached(&caller.backend) {
            return Ok(None);
        }
        let host = req
            .details
            .hostname
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned);
        let aliases: Vec<String> = req
            .aliases
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if host.is_none() && aliases.is_empty() {
            return Ok(None);
        }
        let fields: Vec<(String, String)> = host
            .iter()
            .map(|h| ("hostname".to_owned(), h.clone()))
            .chain(
                req.aliases
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| !a.trim().is_empty())
                    .map(|(i, a)| (format!("aliases[{i}]"), a.trim().to_owned())),
            )
            .collect();
        self.check_names(caller, &req.networks, &fields).await?;
        Ok(Some((host, aliases)))
    }

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
                self.last_listing.insert(key, nets.clone()).await;
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
        let last = self.last_listing.get(&key).await;
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

    /// [`Ipam::update`] without DNS: the record changes, its names stay out of DNS (a machine that
    /// opted out, e.g. vRA's `ipamgw.dns = "false"`).
    pub async fn update_unregistered(
        &self,
        caller: &Caller,
        network: &NetworkId,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<Allocation> {
        self.check_route(caller, network, "network")?;
        let backend = self.backend(&caller.backend)?;
        let a = {
            let _guard = self.locks.lock(LockKey::Records(network.clone())).await;
            timed(
                &caller.backend,
                "update",
                backend.update(&caller.cx, &network.backend_id(), address, changes),
            )
            .await?
        };
        Ok(self.to_allocation(&caller.backend, a))
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

    /// Takes every item of `batch` or none: items in order, each group pinned to the network its
    /// first item was taken in; on the first failure, what was taken is given back last first
    /// and the failure names the item, its error (the original one) and how the rollback went.
    /// See [`Batch`].
    pub async fn run_batch(&self, caller: &Caller, batch: &Batch) -> Result<Taken, BatchFailure> {
        let mut taken = Taken::default();
        for (index, item) in batch.items.iter().enumerate() {
            let pinned = item.group.and_then(|g| taken.network_of(g)).cloned();
            let tried = match pinned {
                Some(n) => vec![n],
                None => item.request.networks.clone(),
            };
            let req = AllocationRequest {
                networks: tried.clone(),
                ..item.request.clone()
            };
            let outcome = match batch.mode {
                BatchMode::InOrder => self.allocate(caller, &req).await,
                BatchMode::HeldFirst { register_dns: true } => {
                    self.allocate_held_first(caller, &req).await
                }
                BatchMode::HeldFirst {
                    register_dns: false,
                } => self.allocate_held_first_unregistered(caller, &req).await,
                BatchMode::Another => self.allocate_another(caller, &req).await,
            };
            match outcome {
                Ok(a) => {
                    taken.allocations.push(a);
                    taken.groups.push(item.group);
                    taken.aliases.push(item.request.aliases.clone());
                }
                Err(error) => {
                    let rollback = self.roll_back(caller, taken).await;
                    return Err(BatchFailure {
                        index,
                        error,
                        tried,
                        rollback,
                    });
                }
            }
        }
        Ok(taken)
    }

    /// Gives back what a batch took, last first: for a step after the batch that fails, so the
    /// call as a whole still takes nothing. Logs and reports what could not be released.
    pub async fn roll_back(&self, caller: &Caller, taken: Taken) -> Rollback {
        let mut failures = Vec::new();
        for (i, a) in taken.allocations.iter().enumerate().rev() {
            let aliases = taken.aliases.get(i).map_or(&[][..], Vec::as_slice);
            if let Err(e) = self
                .release_with_aliases(caller, &a.network_id, a.address, aliases)
                .await
            {
                tracing::error!(address = %a.address, network = %a.network_id, error = %e,
                    "rollback could not release an address");
                failures.push(format!("{} in {}: {e}", a.address, a.network_id));
            }
        }
        Rollback {
            taken: taken.allocations,
            failures,
        }
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

    /// Gives an address back; an address that is already free is not an error. With DNS
    /// attached, the records of the address's host name that point at it go first (exactly
    /// those: the name's other addresses stay); with `required`, a DNS failure keeps the address
    /// held, so the retry finds the name again.
    pub async fn release(
        &self,
        caller: &Caller,
        network: &NetworkId,
        address: IpAddr,
    ) -> IpamResult<()> {
        self.release_with_aliases(caller, network, address, &[])
            .await
    }

    /// [`Ipam::release`] that also deletes the records of `aliases` (more names of the address,
    /// [`AllocationRequest::aliases`]) pointing at it, with the host name's, in one round trip.
    pub async fn release_with_aliases(
        &self,
        caller: &Caller,
        network: &NetworkId,
        address: IpAddr,
        aliases: &[String],
    ) -> IpamResult<()> {
        self.check_route(caller, network, "network")?;
        if let Some(updater) = self
            .dns
            .updater(&caller.backend, &network.backend_id())
            .cloned()
        {
            let held = match self.get(caller, network, address).await {
                Ok(a) => a.hostname.filter(|h| !h.trim().is_empty()),
                Err(IpamError::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            let names = self
                .held_names(caller, network, &updater, held.as_deref(), aliases)
                .await;
            if !names.is_empty() {
                let net = self.cidr_of(caller, network).await;
                let outcome = updater
                    .set_names(address, net, &names, &[], OnFailure::Keep)
                    .await
                    .map_err(|e| dns_error(&updater.settings().name, e));
                Self::dns_policy(&updater, "delete", address, outcome)?;
            }
        }
        self.release_address(caller, network, address).await
    }

    /// [`Ipam::release`] without DNS.
    async fn release_address(
        &self,
        caller: &Caller,
        network: &NetworkId,
        address: IpAddr,
    ) -> IpamResult<()> {
        let backend = self.backend(&caller.backend)?;
        let _guard = self.locks.lock(LockKey::Records(network.clone())).await;
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

    /// Changes an address's record (MAC, host name, description). With DNS attached, a new
    /// host name moves the address's records to it (a cleared one deletes them), see
    /// [`Ipam::update_with_aliases`].
    pub async fn update(
        &self,
        caller: &Caller,
        network: &NetworkId,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<Allocation> {
        self.update_with_aliases(caller, network, address, changes, &[], &[])
            .await
    }

    /// [`Ipam::update`] for an address with more names than its host name
    /// ([`AllocationRequest::aliases`]): `old_aliases` are the names it had, `new_aliases` those
    /// it keeps or gets. Names that leave lose the records pointing at this address (only
    /// those), names that come get them, the PTR follows the host name.
    ///
    /// DNS goes first, then the record. So when DNS fails with `required = true`, the caller
    /// sees the DNS server's answer (a 502 naming the zone, or a 504), the record is unchanged
    /// (old host name, old MAC) and so is DNS: the updates of the change that were applied are
    /// undone ([`OnFailure::Revert`]); a retry does the whole change again. When DNS succeeded
    /// and the record update then fails, DNS is moved back to the old names (best effort) and
    /// the caller sees the backend's error. With `required = false` a DNS failure is logged and
    /// counted and the record is updated.
    pub async fn update_with_aliases(
        &self,
        caller: &Caller,
        network: &NetworkId,
        address: IpAddr,
        changes: &RecordChanges,
        old_aliases: &[String],
        new_aliases: &[String],
    ) -> IpamResult<Allocation> {
        self.check_route(caller, network, "network")?;
        let updater = self
            .dns
            .updater(&caller.backend, &network.backend_id())
            .cloned();
        // The host name it gets: `Some(None)` when cleared, `None` when unchanged. Checked
        // before anything changes.
        let new_host = match changes.hostname.as_deref().map(str::trim) {
            Some(h) if updater.is_some() && !h.is_empty() => {
                crate::dns::names::validate("hostname", h)
                    .map_err(|e| IpamError::invalid(e.field, e.why))?;
                Some(Some(h.to_owned()))
            }
            Some(_) if updater.is_some() => Some(None),
            _ => None,
        };
        let aliases_change = old_aliases != new_aliases;
        // The names before and after, when they change.
        let moves = match &updater {
            Some(u) if new_host.is_some() || aliases_change => {
                let old_host = self
                    .get(caller, network, address)
                    .await?
                    .hostname
                    .filter(|h| !h.trim().is_empty());
                let host = match &new_host {
                    Some(h) => h.clone(),
                    None => old_host.clone(),
                };
                let (new, _) = self
                    .dns_names(caller, network, host.as_deref(), new_aliases)
                    .await?;
                let net = self.cidr_of(caller, network).await;
                let old = self
                    .held_names(caller, network, u, old_host.as_deref(), old_aliases)
                    .await;
                // Nothing to register for a record that had no names and gets none.
                (!(old.is_empty() && new.is_empty())).then_some((old, new, net))
            }
            _ => None,
        };
        if let (Some(updater), Some((old, new, net))) = (&updater, &moves) {
            let on_failure = if updater.settings().required {
                OnFailure::Revert
            } else {
                OnFailure::Keep
            };
            let outcome = updater
                .set_names(address, *net, old, new, on_failure)
                .await
                .map_err(|e| dns_error(&updater.settings().name, e));
            Self::dns_policy(updater, "update", address, outcome)?;
        }
        let backend = self.backend(&caller.backend)?;
        let updated = {
            let _guard = self.locks.lock(LockKey::Records(network.clone())).await;
            timed(
                &caller.backend,
                "update",
                backend.update(&caller.cx, &network.backend_id(), address, changes),
            )
            .await
        };
        match updated {
            Ok(a) => Ok(self.to_allocation(&caller.backend, a)),
            Err(e) => {
                if let (Some(updater), Some((old, new, net))) = (&updater, &moves) {
                    // The record keeps its old names: so does DNS.
                    if let Err(d) = updater
                        .set_names(address, *net, new, old, OnFailure::Keep)
                        .await
                    {
                        tracing::error!(%address, error = %d, record_error = %e,
                            "the record update failed and DNS could not be moved back to the old names");
                    }
                }
                Err(e)
            }
        }
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
        let _guard = self.locks.lock(LockKey::Block(block.clone())).await;
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
        let _guard = self.locks.lock(LockKey::Records(network.clone())).await;
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

// ----------------------------------------------------------------------------------------------
// Batches: all or nothing

/// How each item of a [`Batch`] is allocated: which [`Ipam`] allocation it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    /// [`Ipam::allocate`]: candidates in order; an owner holding an address in one gets it back.
    InOrder,
    /// [`Ipam::allocate_held_first`] (the host name registered in DNS), or with
    /// `register_dns: false` [`Ipam::allocate_held_first_unregistered`].
    HeldFirst { register_dns: bool },
    /// [`Ipam::allocate_another`]: a new address even where the owner holds one (moving an
    /// address in place: take the new one first).
    Another,
}

/// Addresses taken all or nothing, the one rule behind the native API's
/// `POST /api/v1/allocations/batch`, vRA's Allocate IP (every address of every NIC) and Avi's
/// Create/Update IPAM record (one address per family), run by [`Ipam::run_batch`]:
///
/// - items are allocated in order, each with the [`BatchMode`] of the batch;
/// - items of one group take their addresses from one network: the first of them to be
///   allocated tries the group's candidates, the later ones only the network it was taken in
///   (vRA: every address of one `IpAllocation` comes from one range, contract p.14);
/// - on the first item that fails, everything taken so far is released last first and the
///   answer is a [`BatchFailure`]: which item, the original error, the networks that item
///   tried, and the [`Rollback`] (what was taken, what could not be given back);
/// - a step the caller runs after a successful batch (reading the networks' settings, changing
///   a kept record) that fails gives the [`Taken`] back with [`Ipam::roll_back`].
///
/// Contracts only build the items from their wire shapes and turn a [`BatchFailure`] into their
/// error envelope.
#[derive(Debug, Clone)]
pub struct Batch {
    mode: BatchMode,
    items: Vec<BatchItem>,
}

#[derive(Debug, Clone)]
struct BatchItem {
    request: AllocationRequest,
    group: Option<usize>,
}

impl Batch {
    pub fn new(mode: BatchMode) -> Self {
        Batch {
            mode,
            items: Vec::new(),
        }
    }

    /// Adds an item of its own (its candidates are tried whatever the other items took).
    /// Returns its index, the one a [`BatchFailure`] names.
    pub fn push(&mut self, request: AllocationRequest) -> usize {
        self.items.push(BatchItem {
            request,
            group: None,
        });
        self.items.len() - 1
    }

    /// Adds an item to `group`: it takes its address in the network where the group's first
    /// allocated item took one (its own candidates are used only when it is that first item).
    /// Returns its index.
    pub fn push_grouped(&mut self, group: usize, request: AllocationRequest) -> usize {
        self.items.push(BatchItem {
            request,
            group: Some(group),
        });
        self.items.len() - 1
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What a [`Batch`] took, in the order of its items. Dropping it keeps the addresses; a later
/// failure of the same call gives them back with [`Ipam::roll_back`].
#[derive(Debug, Default)]
#[must_use = "the addresses stay taken; give them back with Ipam::roll_back if the call fails"]
pub struct Taken {
    allocations: Vec<Allocation>,
    groups: Vec<Option<usize>>,
    /// Each item's [`AllocationRequest::aliases`]: a rollback deletes their records too.
    aliases: Vec<Vec<String>>,
}

impl Taken {
    /// One per item, in item order.
    pub fn allocations(&self) -> &[Allocation] {
        &self.allocations
    }

    /// The network a group's addresses were taken in.
    pub fn network_of(&self, group: usize) -> Option<&NetworkId> {
        self.in_group(group).next().map(|a| &a.network_id)
    }

    /// A group's allocations, in item order.
    pub fn in_group(&self, group: usize) -> impl Iterator<Item = &Allocation> {
        self.allocations
            .iter()
            .zip(&self.groups)
            .filter(move |(_, g)| **g == Some(group))
            .map(|(a, _)| a)
    }
}

/// How giving a batch's addresses back went.
#[derive(Debug, Clone, Default)]
pub struct Rollback {
    /// What had been taken, in the order it was taken (released last first).
    pub taken: Vec<Allocation>,
    /// What could not be released, `<address> in <network id>: <error>` (each also logged):
    /// those addresses stay held by their owners.
    pub failures: Vec<String>,
}

/// The failure of a [`Batch`]: which item, why, and what the rollback did.
#[derive(Debug, Clone)]
pub struct BatchFailure {
    /// The failed item's index (what [`Batch::push`] returned).
    pub index: usize,
    /// The item's own error, unchanged.
    pub error: IpamError,
    /// The networks the item was tried in: its candidates, or its group's network.
    pub tried: Vec<NetworkId>,
    pub rollback: Rollback,
}

#[cfg(test)]
mod batch_tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A store of pools: backend-local network → the addresses it hands out, lowest free first,
    /// as every backend's next-free allocation does (phpIPAM `first_free`, Infoblox
    /// `next_available_ip`, the embedded store's scan). A full pool answers `Exhausted`, as
    /// `Backend::allocate` documents. `fail_allocation` makes the Nth allocation (0-based) fail
    /// and `fail_release` the release of one address, as an unreachable backend fails
    /// (`Unavailable`, the error of a refused connection in `backends::http`). `released` records
    /// the order of releases.
    #[derive(Debug, Default)]
    struct Pools {
        free: Mutex<BTreeMap<String, Vec<IpAddr>>>,
        held: Mutex<Vec<AllocationInfo>>,
        allocations: std::sync::atomic::AtomicUsize,
        fail_allocation: Option<usize>,
        fail_release: Option<IpAddr>,
        released: Mutex<Vec<IpAddr>>,
    }

    fn down() -> IpamError {
        IpamError::Unavailable {
            backend: "b".into(),
            detail: "connection refused".into(),
        }
    }

    impl Pools {
        fn with(pools: &[(&str, &[&str])]) -> Pools {
            let free = pools
                .iter()
                .map(|(n, addrs)| {
                    let addrs = addrs.iter().map(|a| a.parse().expect("ip")).collect();
                    ((*n).to_owned(), addrs)
                })
                .collect();
            Pools {
                free: Mutex::new(free),
                ..Pools::default()
            }
        }

        fn held(&self) -> Vec<IpAddr> {
            self.held
                .lock()
                .expect("held")
                .iter()
                .map(|a| a.address)
                .collect()
        }
    }

    #[async_trait::async_trait]
    impl Backend for Pools {
        fn name(&self) -> &str {
            "b"
        }
        fn kind(&self) -> &'static str {
            "pools"
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
            let n = self
                .allocations
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.fail_allocation == Some(n) {
                return Err(down());
            }
            let mut free = self.free.lock().expect("free");
            let pool = free
                .get_mut(&req.network)
                .ok_or_else(|| IpamError::NotFound(format!("network {}", req.network)))?;
            if pool.is_empty() {
                return Err(IpamError::Exhausted(format!("{} is full", req.network)));
            }
            let address = pool.remove(0);
            let a = AllocationInfo {
                network: req.network.clone(),
                address,
                owner: Some(req.owner.clone()),
                details: req.details.clone(),
                reference: None,
            };
            self.held.lock().expect("held").push(a.clone());
            Ok(a)
        }
        async fn find(
            &self,
            _cx: &CallContext,
            lookup: &Lookup,
        ) -> IpamResult<Vec<AllocationInfo>> {
            let held = self.held.lock().expect("held");
            Ok(held
                .iter()
                .filter(|a| match lookup {
                    Lookup::Owner(o) => a.owner.as_ref() == Some(o),
                    Lookup::Address { address, .. } => a.address == *address,
                })
                .cloned()
                .collect())
        }
        async fn release(
            &self,
            _cx: &CallContext,
            network: &str,
            address: IpAddr,
        ) -> IpamResult<()> {
            if self.fail_release == Some(address) {
                return Err(down());
            }
            self.released.lock().expect("released").push(address);
            let mut held = self.held.lock().expect("held");
            if let Some(i) = held.iter().position(|a| a.address == address) {
                held.remove(i);
                let mut free = self.free.lock().expect("free");
                if let Some(pool) = free.get_mut(network) {
                    pool.push(address);
                    pool.sort();
                }
            }
            Ok(())
        }
        async fn update(
            &self,
            _cx: &CallContext,
            _network: &str,
            _address: IpAddr,
            _changes: &RecordChanges,
        ) -> IpamResult<AllocationInfo> {
            Err(IpamError::Unsupported("update".into()))
        }
        async fn allocate_network(
            &self,
            _cx: &CallContext,
            _req: &CarveRequest,
        ) -> IpamResult<crate::domain::NetworkInfo> {
            Err(IpamError::Unsupported("carve".into()))
        }
        async fn release_network(&self, _cx: &CallContext, _network: &str) -> IpamResult<()> {
            Err(IpamError::Unsupported("carve".into()))
        }
    }

    fn ipam_over(b: &Arc<Pools>) -> Ipam {
        let backend: Arc<dyn Backend> = b.clone();
        Ipam::new(vec![backend], Duration::from_secs(60))
    }

    fn caller() -> Caller {
        Caller {
            name: "test".into(),
            backend: "b".into(),
            cx: CallContext::default(),
        }
    }

    fn net(local: &str) -> NetworkId {
        NetworkId::new("b", local)
    }

    fn request(owner: &str, networks: &[&str]) -> AllocationRequest {
        AllocationRequest {
            owner: Owner::parse(owner).expect("owner"),
            networks: networks.iter().map(|n| net(n)).collect(),
            address: None,
            details: RecordDetails::default(),
            aliases: Vec::new(),
        }
    }

    fn ips(texts: &[&str]) -> Vec<IpAddr> {
        texts.iter().map(|t| t.parse().expect("ip")).collect()
    }

    #[tokio::test]
    async fn a_batch_that_fails_on_its_third_item_gives_back_the_first_two_last_first() {
        let b = Arc::new(Pools {
            fail_allocation: Some(2),
            ..Pools::with(&[("a", &["10.0.0.1", "10.0.0.2", "10.0.0.3"])])
        });
        let ipam = ipam_over(&b);
        let mut batch = Batch::new(BatchMode::InOrder);
        for owner in ["o1", "o2", "o3"] {
            batch.push(request(owner, &["a"]));
        }
        let f = ipam
            .run_batch(&caller(), &batch)
            .await
            .expect_err("the third fails");
        assert_eq!(f.index, 2);
        assert!(
            matches!(f.error, IpamError::Unavailable { .. }),
            "{}",
            f.error
        );
        assert_eq!(f.tried, vec![net("a")]);
        let taken: Vec<IpAddr> = f.rollback.taken.iter().map(|a| a.address).collect();
        assert_eq!(taken, ips(&["10.0.0.1", "10.0.0.2"]), "in the order taken");
        assert!(f.rollback.failures.is_empty(), "{:?}", f.rollback.failures);
        assert_eq!(
            *b.released.lock().expect("released"),
            ips(&["10.0.0.2", "10.0.0.1"]),
            "released last first"
        );
        assert!(b.held().is_empty(), "nothing is left taken: {:?}", b.held());
    }

    #[tokio::test]
    async fn a_rollback_that_cannot_release_an_address_reports_it_and_releases_the_rest() {
        let b = Arc::new(Pools {
            fail_allocation: Some(2),
            fail_release: Some(ips(&["10.0.0.1"])[0]),
            ..Pools::with(&[("a", &["10.0.0.1", "10.0.0.2", "10.0.0.3"])])
        });
        let ipam = ipam_over(&b);
        let mut batch = Batch::new(BatchMode::InOrder);
        for owner in ["o1", "o2", "o3"] {
            batch.push(request(owner, &["a"]));
        }
        let f = ipam
            .run_batch(&caller(), &batch)
            .await
            .expect_err("the third fails");
        assert!(
            matches!(f.error, IpamError::Unavailable { .. }),
            "the item's own error, not the rollback's: {}",
            f.error
        );
        assert_eq!(f.rollback.taken.len(), 2);
        assert_eq!(f.rollback.failures.len(), 1, "{:?}", f.rollback.failures);
        let failure = &f.rollback.failures[0];
        assert!(
            failure.starts_with(&format!("10.0.0.1 in {}: ", net("a"))),
            "names the address and its network: {failure}"
        );
        assert!(failure.contains("connection refused"), "and why: {failure}");
        assert_eq!(
            b.held(),
            ips(&["10.0.0.1"]),
            "only the failed release stays"
        );
    }

    #[tokio::test]
    async fn items_of_one_group_take_from_the_network_its_first_item_was_taken_in() {
        // `a` has one address left, `b` plenty: alone, the second item would spill into `b`.
        let b = Arc::new(Pools::with(&[
            ("a", &["10.0.0.1"]),
            ("b", &["10.0.1.1", "10.0.1.2"]),
        ]));
        let ipam = ipam_over(&b);
        let mut batch = Batch::new(BatchMode::InOrder);
        batch.push_grouped(7, request("o1", &["a", "b"]));
        batch.push_grouped(7, request("o2", &["a", "b"]));
        let f = ipam
            .run_batch(&caller(), &batch)
            .await
            .expect_err("the group's network is full");
        assert_eq!(f.index, 1);
        assert!(matches!(f.error, IpamError::Exhausted(_)), "{}", f.error);
        assert_eq!(f.tried, vec![net("a")], "only the pinned network was tried");
        assert_eq!(f.rollback.taken.len(), 1);
        assert!(b.held().is_empty(), "{:?}", b.held());

        // The same two items on their own: each tries every candidate.
        let mut batch = Batch::new(BatchMode::InOrder);
        batch.push(request("o1", &["a", "b"]));
        batch.push(request("o2", &["a", "b"]));
        let taken = ipam.run_batch(&caller(), &batch).await.expect("taken");
        let nets: Vec<&NetworkId> = taken.allocations().iter().map(|a| &a.network_id).collect();
        assert_eq!(nets, vec![&net("a"), &net("b")]);
    }

    #[tokio::test]
    async fn a_group_whose_first_candidate_is_full_is_pinned_where_its_first_item_went() {
        let b = Arc::new(Pools::with(&[
            ("a", &[]),
            ("b", &["10.0.1.1", "10.0.1.2", "10.0.1.3"]),
            ("c", &["10.0.2.1"]),
        ]));
        let ipam = ipam_over(&b);
        let mut batch = Batch::new(BatchMode::InOrder);
        for owner in ["g0-1", "g0-2", "g0-3"] {
            batch.push_grouped(0, request(owner, &["a", "b"]));
        }
        batch.push_grouped(1, request("g1-1", &["c"]));
        let taken = ipam.run_batch(&caller(), &batch).await.expect("taken");
        assert_eq!(taken.network_of(0), Some(&net("b")));
        assert_eq!(taken.network_of(1), Some(&net("c")));
        assert_eq!(taken.network_of(2), None);
        let group0: Vec<IpAddr> = taken.in_group(0).map(|a| a.address).collect();
        assert_eq!(group0, ips(&["10.0.1.1", "10.0.1.2", "10.0.1.3"]));
    }

    #[tokio::test]
    async fn what_a_batch_took_is_given_back_when_a_later_step_fails() {
        let b = Arc::new(Pools::with(&[("a", &["10.0.0.1", "10.0.0.2"])]));
        let ipam = ipam_over(&b);
        let mut batch = Batch::new(BatchMode::InOrder);
        batch.push(request("o1", &["a"]));
        batch.push(request("o2", &["a"]));
        let taken = ipam.run_batch(&caller(), &batch).await.expect("taken");
        assert_eq!(b.held().len(), 2);
        let rollback = ipam.roll_back(&caller(), taken).await;
        assert_eq!(rollback.taken.len(), 2);
        assert!(rollback.failures.is_empty());
        assert!(b.held().is_empty(), "{:?}", b.held());
        assert_eq!(
            *b.released.lock().expect("released"),
            ips(&["10.0.0.2", "10.0.0.1"])
        );
    }

    #[tokio::test]
    async fn a_retried_batch_gets_the_addresses_its_owners_already_hold() {
        let b = Arc::new(Pools::with(&[("a", &["10.0.0.1", "10.0.0.2", "10.0.0.3"])]));
        let ipam = ipam_over(&b);
        for mode in [
            BatchMode::InOrder,
            BatchMode::HeldFirst { register_dns: true },
        ] {
            let mut batch = Batch::new(mode);
            batch.push(request("o1", &["a"]));
            batch.push(request("o2", &["a"]));
            let taken = ipam.run_batch(&caller(), &batch).await.expect("taken");
            let got: Vec<IpAddr> = taken.allocations().iter().map(|a| a.address).collect();
            assert_eq!(got, ips(&["10.0.0.1", "10.0.0.2"]), "{mode:?}");
        }
        // `Another` takes new ones even so (moving an address in place).
        let mut batch = Batch::new(BatchMode::Another);
        batch.push(request("o1", &["a"]));
        let taken = ipam.run_batch(&caller(), &batch).await.expect("taken");
        assert_eq!(taken.allocations()[0].address, ips(&["10.0.0.3"])[0]);
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

/// Counts what [`Ipam::converge`] found when an owner held more than one record in a network:
/// `kept` (ours was first), `released` (ours was later and is given back), `release_failed`.
fn race_counter(backend: &str, outcome: &'static str) {
    metrics::counter!("ipamgw_allocation_races_total",
        "backend" => backend.to_owned(), "outcome" => outcome)
    .increment(1);
}

/// What this process serialises, and against what. Locks are per process: other replicas are
/// never excluded, and each backend's own primitive decides between them.
///
/// Which operations exclude which is the decision this type records:
///
/// - An allocation holds [`LockKey::Owner`] for the whole request and, on a backend whose
///   allocation is not atomic ([`Backend::atomic_allocation`]), [`LockKey::NextFree`] of the
///   network around the backend call that takes the address.
/// - Release, update and deleting a network hold [`LockKey::Records`] of the network; carving
///   holds [`LockKey::Block`] of the block.
///
/// **A release (or update) does not wait for an allocation in the same network, and that is
/// right.** `NextFree` exists because phpIPAM's `first_free` is a lookup then an insert: two
/// allocations of this process in one network would read the same lowest free address and
/// one of them would lose the insert (409 / duplicate) and retry, so they take turns. What an
/// allocation relies on between that lookup and that insert is that nobody *takes* the address
/// it read. A release only frees: an address freed inside the window is either seen free and
/// taken (it is free) or not seen and a higher one taken; an update changes a record's text,
/// not which addresses are held. Neither can make the allocation take a held address or lose
/// one, so excluding them would only make a release wait behind a slow allocation. (A release
/// of the very address just handed out is an ordering between two requests, the same as the
/// release arriving just after; no lock can tell them apart.) Proved by
/// `a_release_does_not_wait_for_an_allocation_in_the_same_network_and_cannot_spoil_it` and
/// `allocations_in_one_network_take_turns_for_the_next_free_address`.
///
/// `Records` serialises a release, an update and a network deletion of one network with each
/// other: on phpIPAM and Infoblox each is a lookup followed by a write by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// One allocation request per owner of a backend at a time: the owner lookup and the
    /// allocation after it cannot race with a retry of the same request.
    Owner { backend: String, owner: Owner },
    /// Taking the next free address of a network, on a backend whose allocation is not atomic.
    NextFree(NetworkId),
    /// Changing or removing what a network holds: release, update, network deletion.
    Records(NetworkId),
    /// Carving networks out of a block: the lookup of the owner's network and the carve.
    Block(NetworkId),
}

/// Async mutexes by key, created on demand and dropped when nobody holds or waits for them.
#[derive(Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<LockKey, Arc<tokio::sync::Mutex<()>>>>,
}

pub struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    key: LockKey,
    mutex: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: LockKey) -> KeyedGuard<'_> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = mutex.clone().lock_owned().await;
        KeyedGuard {
            locks: self,
            key,
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
                let _g = locks.lock(net_key("net-a")).await;
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

    use std::sync::atomic::Ordering::SeqCst;

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
        async fn update(
            &self,
            _cx: &CallContext,
            _network: &str,
            _address: IpAddr,
            _changes: &RecordChanges,
        ) -> IpamResult<AllocationInfo> {
            Err(IpamError::Unsupported("update".into()))
        }
        async fn allocate_network(
            &self,
            _cx: &CallContext,
            _req: &CarveRequest,
        ) -> IpamResult<crate::domain::NetworkInfo> {
            Err(IpamError::Unsupported("carve".into()))
        }
        async fn release_network(&self, _cx: &CallContext, _network: &str) -> IpamResult<()> {
            Err(IpamError::Unsupported("carve".into()))
        }
    }

    fn racing_ipam(b: &Arc<Racing>) -> Ipam {
        let backend: Arc<dyn Backend> = b.clone();
        Ipam::new(vec![backend], Duration::from_secs(60))
    }

    fn caller() -> Caller {
        Caller {
            name: "test".into(),
            backend: "b".into(),
            cx: CallContext::default(),
        }
    }

    fn wanted(owner: &str, address: Option<&str>) -> AllocationRequest {
        AllocationRequest {
            owner: Owner::parse(owner).expect("owner"),
            networks: vec![NetworkId::new("b", "net")],
            address: address.map(|a| a.parse().expect("address")),
            details: RecordDetails::default(),
            aliases: Vec::new(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
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

    #[tokio::test]
    async fn different_keys_do_not_block_each_other() {
        let locks = KeyedLocks::default();
        let _a = locks.lock(net_key("a")).await;
        let b = tokio::time::timeout(Duration::from_secs(1), locks.lock(net_key("b"))).await;
        assert!(b.is_ok());
        // The same id under another kind of key is another lock.
        let c = tokio::time::timeout(
            Duration::from_secs(1),
            locks.lock(LockKey::NextFree(NetworkId::new("b", "a"))),
        )
        .await;
        assert!(c.is_ok());
    }

    fn net_key(local: &str) -> LockKey {
        LockKey::Records(NetworkId::new("b", local))
    }

    /// phpIPAM's `POST addresses/first_free/{subnet}/` as the two steps it is inside phpIPAM:
    /// read the lowest free address, then insert it; the insert of an address taken in between
    /// fails as phpIPAM's unique key (ip, subnet) makes it fail (a 409 or a "Duplicate entry"
    /// 500, see `PhpipamBackend::allocate_next` and the module doc of `backends::phpipam`).
    /// Every allocation waits between the two steps until the test adds a permit to `gate`;
    /// `inside` / `max_inside` count allocations in that window. Addresses are 10.0.0.x, the
    /// network hands out .2 upwards.
    #[derive(Debug)]
    struct FirstFree {
        taken: Mutex<std::collections::BTreeSet<u8>>,
        gate: tokio::sync::Semaphore,
        in_window: tokio::sync::Notify,
        inside: std::sync::atomic::AtomicUsize,
        max_inside: std::sync::atomic::AtomicUsize,
    }

    impl FirstFree {
        fn holding(taken: &[u8]) -> Arc<Self> {
            Arc::new(FirstFree {
                taken: Mutex::new(taken.iter().copied().collect()),
                gate: tokio::sync::Semaphore::new(0),
                in_window: tokio::sync::Notify::new(),
                inside: std::sync::atomic::AtomicUsize::new(0),
                max_inside: std::sync::atomic::AtomicUsize::new(0),
            })
        }

        fn taken(&self) -> Vec<u8> {
            self.taken.lock().expect("taken").iter().copied().collect()
        }
    }

    fn last_octet(a: IpAddr) -> Option<u8> {
        match a {
            IpAddr::V4(v4) => Some(v4.octets()[3]),
            IpAddr::V6(_) => None,
        }
    }

    #[async_trait::async_trait]
    impl Backend for FirstFree {
        fn name(&self) -> &str {
            "b"
        }
        fn kind(&self) -> &'static str {
            "first-free"
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
            let read = {
                let taken = self.taken.lock().expect("taken");
                (2..=254u8)
                    .find(|x| !taken.contains(x))
                    .ok_or_else(|| IpamError::Exhausted("10.0.0.0/24 is full".into()))?
            };
            let now = self.inside.fetch_add(1, SeqCst) + 1;
            self.max_inside.fetch_max(now, SeqCst);
            self.in_window.notify_one();
            self.gate
                .acquire()
                .await
                .map_err(|_| IpamError::Internal("gate closed".into()))?
                .forget();
            self.inside.fetch_sub(1, SeqCst);
            if !self.taken.lock().expect("taken").insert(read) {
                return Err(IpamError::Conflict(format!(
                    "Duplicate entry '10.0.0.{read}' for key 'ip_subnet'"
                )));
            }
            Ok(AllocationInfo {
                network: req.network.clone(),
                address: IpAddr::from([10, 0, 0, read]),
                owner: Some(req.owner.clone()),
                details: req.details.clone(),
                reference: None,
            })
        }
        async fn find(
            &self,
            _cx: &CallContext,
            _lookup: &Lookup,
        ) -> IpamResult<Vec<AllocationInfo>> {
            Ok(Vec::new())
        }
        async fn release(
            &self,
            _cx: &CallContext,
            _network: &str,
            address: IpAddr,
        ) -> IpamResult<()> {
            if let Some(x) = last_octet(address) {
                self.taken.lock().expect("taken").remove(&x);
            }
            Ok(())
        }
        async fn update(
            &self,
            _cx: &CallContext,
            _network: &str,
            _address: IpAddr,
            _changes: &RecordChanges,
        ) -> IpamResult<AllocationInfo> {
            Err(IpamError::Unsupported("update".into()))
        }
        async fn allocate_network(
            &self,
            _cx: &CallContext,
            _req: &CarveRequest,
        ) -> IpamResult<crate::domain::NetworkInfo> {
            Err(IpamError::Unsupported("carve".into()))
        }
        async fn release_network(&self, _cx: &CallContext, _network: &str) -> IpamResult<()> {
            Err(IpamError::Unsupported("carve".into()))
        }
    }

    fn first_free_ipam(b: &Arc<FirstFree>) -> Arc<Ipam> {
        let backend: Arc<dyn Backend> = b.clone();
        Arc::new(Ipam::new(vec![backend], Duration::from_secs(60)))
    }

    /// The decision in [`LockKey`]'s doc: a release in a network goes ahead while an allocation
    /// there is between reading the next free address and inserting it, and the allocation
    /// still takes a free address, holding nothing twice and losing nothing.
    #[tokio::test]
    async fn a_release_does_not_wait_for_an_allocation_in_the_same_network_and_cannot_spoil_it() {
        let b = FirstFree::holding(&[2, 3, 5]);
        let ipam = first_free_ipam(&b);
        let allocation = tokio::spawn({
            let ipam = ipam.clone();
            async move {
                ipam.allocate_another(&caller(), &wanted("vm-a", None))
                    .await
            }
        });
        tokio::time::timeout(Duration::from_secs(5), b.in_window.notified())
            .await
            .expect("the allocation read the next free address (.4)");
        let net = NetworkId::new("b", "net");
        // Frees an address below the one the allocation read, and the one it read (already
        // free: releasing it is a no-op), while the allocation holds the network's NextFree.
        for freed in ["10.0.0.3", "10.0.0.4"] {
            tokio::time::timeout(
                Duration::from_secs(1),
                ipam.release(&caller(), &net, ip(freed)),
            )
            .await
            .unwrap_or_else(|_| panic!("releasing {freed} waited for the allocation"))
            .expect("released");
        }
        assert_eq!(b.taken(), vec![2, 5], "released while the allocation waits");
        b.gate.add_permits(1);
        let got = allocation
            .await
            .expect("task")
            .expect("the allocation is not spoiled by the release");
        assert_eq!(
            got.address,
            ip("10.0.0.4"),
            "the address it read, still free"
        );
        assert_eq!(b.taken(), vec![2, 4, 5], "nothing held twice, nothing lost");
    }

    /// The other half: allocations of this process in one network take turns around the
    /// backend's non-atomic next-free step, so they never read the same address and never lose
    /// the insert to each other.
    #[tokio::test]
    async fn allocations_in_one_network_take_turns_for_the_next_free_address() {
        let b = FirstFree::holding(&[2]);
        let ipam = first_free_ipam(&b);
        let tasks: Vec<_> = ["vm-a", "vm-b", "vm-c"]
            .into_iter()
            .map(|owner| {
                let ipam = ipam.clone();
                tokio::spawn(
                    async move { ipam.allocate_another(&caller(), &wanted(owner, None)).await },
                )
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(5), b.in_window.notified())
            .await
            .expect("one allocation is in the window");
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(b.inside.load(SeqCst), 1, "the others wait for NextFree");
        b.gate.add_permits(3);
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.expect("task").expect("every allocation succeeds"));
        }
        let mut addresses: Vec<IpAddr> = got.iter().map(|a| a.address).collect();
        addresses.sort();
        assert_eq!(
            addresses,
            vec![ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.5")]
        );
        assert_eq!(b.max_inside.load(SeqCst), 1, "never two in the window");
        assert_eq!(b.taken(), vec![2, 3, 4, 5]);
    }

    /// A backend with one network that counts how often its listing is read.
    #[derive(Debug, Default)]
    struct Listed {
        listings: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Backend for Listed {
        fn name(&self) -> &str {
            "b"
        }
        fn kind(&self) -> &'static str {
            "listed"
        }
        async fn check(&self, _cx: &CallContext) -> IpamResult<BackendStatus> {
            Err(IpamError::Unsupported("check".into()))
        }
        async fn networks(&self, _cx: &CallContext) -> IpamResult<Vec<crate::domain::NetworkInfo>> {
            self.listings.fetch_add(1, SeqCst);
            let cidr: ipnet::IpNet = "10.0.0.0/24".parse().expect("cidr");
            Ok(vec![crate::domain::NetworkInfo::bare(
                "net",
                "servers",
                cidr,
                (ip("10.0.0.1"), ip("10.0.0.254")),
            )])
        }
        async fn blocks(&self, _cx: &CallContext) -> IpamResult<Vec<crate::domain::BlockInfo>> {
            Ok(Vec::new())
        }
        async fn allocate(
            &self,
            _cx: &CallContext,
            _req: &AllocateIn,
        ) -> IpamResult<AllocationInfo> {
            Err(IpamError::Unsupported("allocate".into()))
        }
        async fn find(
            &self,
            _cx: &CallContext,
            _lookup: &Lookup,
        ) -> IpamResult<Vec<AllocationInfo>> {
            Ok(Vec::new())
        }
        async fn release(
            &self,
            _cx: &CallContext,
            _network: &str,
            _address: IpAddr,
        ) -> IpamResult<()> {
            Ok(())
        }
        async fn update(
            &self,
            _cx: &CallContext,
            _network: &str,
            _address: IpAddr,
            _changes: &RecordChanges,
        ) -> IpamResult<AllocationInfo> {
            Err(IpamError::Unsupported("update".into()))
        }
        async fn allocate_network(
            &self,
            _cx: &CallContext,
            _req: &CarveRequest,
        ) -> IpamResult<crate::domain::NetworkInfo> {
            Err(IpamError::Unsupported("carve".into()))
        }
        async fn release_network(&self, _cx: &CallContext, _network: &str) -> IpamResult<()> {
            Err(IpamError::Unsupported("carve".into()))
        }
    }

    fn listed_ipam(b: &Arc<Listed>, ttl: Duration, capacity: u64) -> Ipam {
        let backend: Arc<dyn Backend> = b.clone();
        Ipam::with_listing_capacity(vec![backend], ttl, capacity)
    }

    fn passthrough(user: &str) -> Caller {
        Caller {
            name: user.into(),
            backend: "b".into(),
            cx: CallContext {
                credentials: Some(crate::backends::Credentials {
                    username: user.into(),
                    password: secrecy::SecretString::from("pw"),
                }),
            },
        }
    }

    /// What the last listing is for: a vRA allocation answer describes the network it took an
    /// address in, after the allocation has dropped the cached listing, without a new listing.
    #[tokio::test]
    async fn network_settings_answer_from_the_last_listing_after_a_change_drops_the_cache() {
        let b = Arc::new(Listed::default());
        let ipam = listed_ipam(&b, Duration::from_secs(3600), LISTING_CAPACITY);
        let net = NetworkId::new("b", "net");
        ipam.network_snapshot(&caller()).await.expect("listing");
        ipam.invalidate("b"); // what an allocation does
        let n = ipam
            .network_settings(&caller(), &net)
            .await
            .expect("settings");
        assert_eq!(n.info.cidr.to_string(), "10.0.0.0/24");
        assert_eq!(b.listings.load(SeqCst), 1, "no second listing");
        // A fresh listing is what `network` reads after the change.
        ipam.network(&caller(), &net).await.expect("network");
        assert_eq!(b.listings.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn the_last_listing_is_not_used_past_the_listing_ttl() {
        let b = Arc::new(Listed::default());
        let ipam = listed_ipam(&b, Duration::from_millis(50), LISTING_CAPACITY);
        ipam.network_snapshot(&caller()).await.expect("listing");
        tokio::time::sleep(Duration::from_millis(300)).await;
        ipam.network_settings(&caller(), &NetworkId::new("b", "net"))
            .await
            .expect("settings");
        assert_eq!(b.listings.load(SeqCst), 2, "expired: listed again");
    }

    /// The map this cache replaced kept one full listing per passthrough user for the life of
    /// the process.
    #[tokio::test]
    async fn the_last_listings_of_many_passthrough_users_stay_within_the_capacity() {
        let b = Arc::new(Listed::default());
        let ipam = listed_ipam(&b, Duration::from_secs(3600), 8);
        for i in 0..200 {
            ipam.network_snapshot(&passthrough(&format!("user-{i}")))
                .await
                .expect("listing");
        }
        assert_eq!(b.listings.load(SeqCst), 200, "one listing per user");
        ipam.last_listing.run_pending_tasks().await;
        ipam.listings.run_pending_tasks().await;
        assert!(
            ipam.last_listing.entry_count() <= 8,
            "{} last listings kept",
            ipam.last_listing.entry_count()
        );
        assert!(ipam.listings.entry_count() <= 8);
    }
}
