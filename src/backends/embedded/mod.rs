//! The embedded backend: networks, on-demand networks and allocations in one redb file.
//!
//! Every change is one redb write transaction committed with immediate durability, so an
//! acknowledged allocation survives `kill -9`. redb admits one writer at a time, which makes
//! "find the next free address and take it" atomic without any lock of ours; the file lock keeps a
//! second process out.
//!
//! Here: the backend, seeding configured networks, carving. `store` opens the file (lock, pid
//! file, format check and migration) and defines its tables; `records` is what the tables hold,
//! the store's own versioned types; `allocate` takes, finds, updates and releases addresses.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::{Backend, CallContext, Claim};
use crate::domain::{
    AllocateIn, AllocationInfo, BackendStatus, BlockInfo, CarveRequest, Family, IpamError,
    IpamResult, Lookup, NetworkInfo, Owner, RecordChanges, RecordDetails,
};
use crate::ipmath::{WholeBlock, check_carve_prefix, usable_range};

mod allocate;
pub mod config;
mod records;
mod store;

use records::{StoredAllocationV1, StoredNetworkV1};
pub use store::pid_file;
use store::{ADDRESSES, NETWORKS, OWNERS, from_u128, net_bounds, to_u128};

/// A row of the networks table as the domain sees it ([`StoredNetworkV1`] on disk).
struct NetworkRow {
    info: NetworkInfo,
    /// Seeded from config (replaced at every start) rather than carved from a block.
    seeded: bool,
}

/// A row of the addresses table as the domain sees it ([`StoredAllocationV1`] on disk).
struct AddressRow {
    owner: Option<Owner>,
    details: RecordDetails,
}

#[derive(Debug, Clone)]
pub struct EmbeddedBackend {
    name: String,
    path: PathBuf,
    db: Arc<Database>,
    blocks: Arc<Vec<BlockInfo>>,
}

impl EmbeddedBackend {
    /// Opens (or creates) the data file, checks and migrates its format ([`store::open`]),
    /// and brings the configured networks up to date. A data file is one process's: a second
    /// open fails naming the holder.
    pub fn open(
        name: &str,
        path: &Path,
        networks: &[NetworkInfo],
        blocks: &[BlockInfo],
    ) -> IpamResult<Self> {
        let db = store::open(name, path)?;
        let backend = EmbeddedBackend {
            name: name.to_owned(),
            path: path.to_owned(),
            db: Arc::new(db),
            blocks: Arc::new(blocks.to_vec()),
        };
        backend.seed(networks)?;
        Ok(backend)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn store_err(&self, e: impl std::fmt::Display) -> IpamError {
        IpamError::Internal(format!("backend {}: embedded store: {e}", self.name))
    }

    fn network_row(&self, bytes: &[u8]) -> IpamResult<NetworkRow> {
        let stored: StoredNetworkV1 =
            records::decode("networks", bytes).map_err(|e| self.store_err(e))?;
        let seeded = stored.seeded;
        let info = stored.into_domain().map_err(|e| self.store_err(e))?;
        Ok(NetworkRow { info, seeded })
    }

    fn network_bytes(&self, info: &NetworkInfo, seeded: bool) -> IpamResult<Vec<u8>> {
        records::encode(&StoredNetworkV1::new(info, seeded)).map_err(|e| self.store_err(e))
    }

    fn address_row(&self, bytes: &[u8]) -> IpamResult<AddressRow> {
        let stored: StoredAllocationV1 =
            records::decode("addresses", bytes).map_err(|e| self.store_err(e))?;
        let (owner, details) = stored.into_domain().map_err(|e| self.store_err(e))?;
        Ok(AddressRow { owner, details })
    }

    fn address_bytes(&self, owner: Option<&Owner>, details: &RecordDetails) -> IpamResult<Vec<u8>> {
        records::encode(&StoredAllocationV1::new(owner, details)).map_err(|e| self.store_err(e))
    }

    fn seed(&self, networks: &[NetworkInfo]) -> IpamResult<()> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        {
            let mut table = txn.open_table(NETWORKS).map_err(|e| self.store_err(e))?;
            txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?;
            txn.open_multimap_table(OWNERS)
                .map_err(|e| self.store_err(e))?;
            let configured: HashSet<&str> =
                networks.iter().map(|n| n.backend_id.as_str()).collect();
            let mut stale = Vec::new();
            for entry in table.iter().map_err(|e| self.store_err(e))? {
                let (k, v) = entry.map_err(|e| self.store_err(e))?;
                let stored = self.network_row(v.value())?;
                if stored.seeded && !configured.contains(k.value()) {
                    stale.push(k.value().to_owned());
                }
            }
            for id in stale {
                tracing::warn!(backend = %self.name, network = %id,
                    "network is no longer in the config; its allocations stay in the data file");
                table.remove(id.as_str()).map_err(|e| self.store_err(e))?;
            }
            for n in networks {
                let bytes = self.network_bytes(n, true)?;
                table
                    .insert(n.backend_id.as_str(), bytes.as_slice())
                    .map_err(|e| self.store_err(e))?;
            }
        }
        txn.commit().map_err(|e| self.store_err(e))
    }

    /// Runs blocking redb work off the async runtime.
    async fn blocking<T, F>(&self, f: F) -> IpamResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&EmbeddedBackend) -> IpamResult<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| IpamError::Internal(format!("backend {}: task failed: {e}", self.name)))?
    }

    fn carve_sync(&self, req: &CarveRequest) -> IpamResult<NetworkInfo> {
        let block = self
            .blocks
            .iter()
            .find(|b| b.backend_id == req.block)
            .ok_or_else(|| IpamError::NotFound(format!("block {}", req.block)))?;
        check_carve_prefix(
            req.prefix_len,
            &block.name,
            &block.cidr,
            WholeBlock::Allowed,
        )?;
        let max = block.cidr.max_prefix_len();
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        let info = {
            let mut networks = txn.open_table(NETWORKS).map_err(|e| self.store_err(e))?;
            let mut taken: Vec<(u128, u128)> = Vec::new();
            for e in networks.iter().map_err(|e| self.store_err(e))? {
                let (_, v) = e.map_err(|e| self.store_err(e))?;
                let n = self.network_row(v.value())?;
                if n.info.address_space == block.address_space
                    && Family::of(&n.info.cidr) == Family::of(&block.cidr)
                {
                    taken.push(net_bounds(&n.info.cidr));
                }
            }
            taken.sort_unstable();
            let size: u128 = 1u128 << (max - req.prefix_len);
            let (block_lo, block_hi) = net_bounds(&block.cidr);
            let overlaps = |lo: u128, hi: u128| taken.iter().find(|(a, b)| *a <= hi && lo <= *b);
            let start = match req.subnet {
                Some(subnet) => {
                    if subnet != subnet.trunc() || !block.cidr.contains(&subnet) {
                        return Err(IpamError::invalid(
                            "subnet",
                            format!("{subnet} is not a subnet of block {}", block.cidr),
                        ));
                    }
                    if subnet.prefix_len() != req.prefix_len {
                        return Err(IpamError::invalid(
                            "prefix_len",
                            format!("/{} does not match subnet {subnet}", req.prefix_len),
                        ));
                    }
                    let (lo, hi) = net_bounds(&subnet);
                    if overlaps(lo, hi).is_some() {
                        return Err(IpamError::Conflict(format!(
                            "{subnet} overlaps an existing network"
                        )));
                    }
                    lo
                }
                None => {
                    let mut candidate = block_lo;
                    loop {
                        let end = candidate + (size - 1);
                        if end > block_hi {
                            return Err(IpamError::Exhausted(format!(
                                "block {} ({}) has no free /{}",
                                block.name, block.cidr, req.prefix_len
                            )));
                        }
                        match overlaps(candidate, end) {
                            None => break candidate,
                            Some((_, other_hi)) => {
                                // Jump past the overlapping network, aligned to the subnet size.
                                let next = other_hi.saturating_add(1);
                                let aligned = next.div_ceil(size).saturating_mul(size);
                                if aligned <= candidate || aligned == u128::MAX {
                                    return Err(IpamError::Exhausted(format!(
                                        "block {} has no free /{}",
                                        block.name, req.prefix_len
                                    )));
                                }
                                candidate = aligned;
                            }
                        }
                    }
                }
            };
            let family = Family::of(&block.cidr);
            let cidr = IpNet::new(from_u128(family, start), req.prefix_len)
                .map_err(|e| IpamError::Internal(format!("carving: {e}")))?;
            let (range_start, range_end) = usable_range(&cidr);
            let gateway = (cidr.hosts().count_at_least(2)).then_some(range_start);
            let range_start = if gateway.is_some() {
                from_u128(family, to_u128(range_start) + 1)
            } else {
                range_start
            };
            let info = NetworkInfo {
                backend_id: format!("{}/{}", block.address_space, cidr),
                name: req
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}-{}", block.name, cidr)),
                description: Some(format!(
                    "carved from block {} for {}",
                    block.name, req.owner
                )),
                cidr,
                range_start,
                range_end,
                gateway,
                dns_servers: block.dns_servers.clone(),
                dns_domain: block.dns_domain.clone(),
                dns_search_domains: block.dns_search_domains.clone(),
                address_space: block.address_space.clone(),
                vlan: None,
                tags: block.tags.clone(),
                free: None,
                block: Some(block.backend_id.clone()),
                owner: Some(req.owner.clone()),
            };
            let bytes = self.network_bytes(&info, false)?;
            networks
                .insert(info.backend_id.as_str(), bytes.as_slice())
                .map_err(|e| self.store_err(e))?;
            info
        };
        txn.commit().map_err(|e| self.store_err(e))?;
        Ok(info)
    }

    fn release_network_sync(&self, id: &str) -> IpamResult<()> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        {
            let mut networks = txn.open_table(NETWORKS).map_err(|e| self.store_err(e))?;
            let Some(stored) = self.load_network(&networks, id)? else {
                return Ok(());
            };
            if stored.seeded {
                return Err(IpamError::Conflict(format!(
                    "network {} ({}) comes from the config, not from a block; remove it there",
                    stored.info.name, stored.info.cidr
                )));
            }
            let addrs = txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?;
            let (lo, hi) = net_bounds(&stored.info.cidr);
            let held = addrs
                .range((id, lo)..=(id, hi))
                .map_err(|e| self.store_err(e))?
                .count();
            if held > 0 {
                return Err(IpamError::Conflict(format!(
                    "network {} ({}) still holds {held} allocated address(es); release them first",
                    stored.info.name, stored.info.cidr
                )));
            }
            networks.remove(id).map_err(|e| self.store_err(e))?;
        }
        txn.commit().map_err(|e| self.store_err(e))
    }
}

/// `Iterator::count` would walk 2^64 hosts of an IPv6 /64; this stops early.
trait CountAtLeast {
    fn count_at_least(self, n: usize) -> bool;
}

impl<I: Iterator> CountAtLeast for I {
    fn count_at_least(self, n: usize) -> bool {
        self.take(n).count() >= n
    }
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn atomic_allocation(&self) -> bool {
        true
    }

    fn atomic_claim(&self) -> bool {
        true
    }

    /// A read transaction: the data file is open and readable.
    async fn ping(&self, _cx: &CallContext) -> IpamResult<()> {
        self.blocking(|b| b.db.begin_read().map(|_| ()).map_err(|e| b.store_err(e)))
            .await
    }

    async fn check(&self, _cx: &CallContext) -> IpamResult<BackendStatus> {
        let networks = self.networks(_cx).await?.len();
        Ok(BackendStatus {
            backend: self.name.clone(),
            kind: "embedded",
            detail: format!("data file {}", self.path.display()),
            networks,
            blocks: self.blocks.len(),
            // Nothing to set up: the store is the gateway's own.
            problems: Vec::new(),
            unchecked: Vec::new(),
        })
    }

    async fn networks(&self, _cx: &CallContext) -> IpamResult<Vec<NetworkInfo>> {
        self.blocking(|b| b.networks_sync()).await
    }

    async fn blocks(&self, _cx: &CallContext) -> IpamResult<Vec<BlockInfo>> {
        Ok(self.blocks.as_ref().clone())
    }

    async fn allocate(&self, _cx: &CallContext, req: &AllocateIn) -> IpamResult<AllocationInfo> {
        let req = req.clone();
        self.blocking(move |b| b.allocate_sync(&req)).await
    }

    async fn claim(&self, _cx: &CallContext, req: &AllocateIn) -> IpamResult<Claim> {
        let req = req.clone();
        self.blocking(move |b| b.claim_sync(&req)).await
    }

    async fn find(&self, _cx: &CallContext, lookup: &Lookup) -> IpamResult<Vec<AllocationInfo>> {
        let lookup = lookup.clone();
        self.blocking(move |b| b.find_sync(&lookup)).await
    }

    async fn release(&self, _cx: &CallContext, network: &str, address: IpAddr) -> IpamResult<()> {
        let network = network.to_owned();
        self.blocking(move |b| b.release_sync(&network, address))
            .await
    }

    async fn update(
        &self,
        _cx: &CallContext,
        network: &str,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<AllocationInfo> {
        let (network, changes) = (network.to_owned(), changes.clone());
        self.blocking(move |b| b.update_sync(&network, address, &changes))
            .await
    }

    async fn allocate_network(
        &self,
        _cx: &CallContext,
        req: &CarveRequest,
    ) -> IpamResult<NetworkInfo> {
        let req = req.clone();
        self.blocking(move |b| b.carve_sync(&req)).await
    }

    async fn release_network(&self, _cx: &CallContext, network: &str) -> IpamResult<()> {
        let network = network.to_owned();
        self.blocking(move |b| b.release_network_sync(&network))
            .await
    }
}

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendSettings, Settings};
    use crate::domain::Mac;

    pub(super) const CONFIG: &str = r#"
        [clients.t]
        password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0eDVEQ9XbOhdVpTvmUsnZdk1lBQ9hm0ONgDhkK6fwrY"
        backend = "local"
        [backends.local]
        kind = "embedded"
        [[backends.local.networks]]
        name = "small"
        cidr = "10.0.0.0/29"
        gateway = "10.0.0.1"
        [[backends.local.networks]]
        name = "v6"
        cidr = "2001:db8::/64"
        gateway = "2001:db8::1"
        [[backends.local.blocks]]
        name = "pool"
        cidr = "10.64.0.0/22"
    "#;

    /// The networks and blocks of [`CONFIG`].
    pub(super) fn config() -> (Vec<NetworkInfo>, Vec<BlockInfo>) {
        let s = Settings::from_toml(CONFIG).expect("config");
        let BackendSettings::Embedded {
            networks, blocks, ..
        } = &s.backends[0]
        else {
            panic!("embedded backend expected");
        };
        (networks.clone(), blocks.clone())
    }

    pub(super) fn open(dir: &Path) -> EmbeddedBackend {
        let (networks, blocks) = config();
        EmbeddedBackend::open("local", &dir.join("t.redb"), &networks, &blocks).expect("open")
    }

    #[test]
    fn a_second_open_of_the_data_file_names_the_process_holding_it() {
        let dir = tempfile::tempdir().expect("dir");
        let first = open(dir.path());
        let pid = std::process::id();
        assert_eq!(
            std::fs::read_to_string(pid_file(first.path())).expect("pid file"),
            format!("{pid}\n"),
            "the holder writes its pid next to the data file"
        );
        let s = Settings::from_toml(CONFIG).expect("config");
        let BackendSettings::Embedded {
            networks, blocks, ..
        } = &s.backends[0]
        else {
            panic!("embedded backend expected");
        };
        let second = EmbeddedBackend::open("other", first.path(), networks, blocks);
        let Err(IpamError::Internal(msg)) = second else {
            panic!("a second open must fail: {second:?}");
        };
        assert!(
            msg.contains(&format!("(pid {pid}) already has it open")),
            "{msg}"
        );
        assert!(msg.contains("backends.other.path"), "{msg}");
        assert!(!msg.contains("Cannot acquire lock"), "{msg}");

        // Held by a process whose pid file is gone or unreadable: the holder is still named.
        std::fs::write(pid_file(first.path()), "garbage").expect("write");
        let Err(IpamError::Internal(msg)) =
            EmbeddedBackend::open("other", first.path(), networks, blocks)
        else {
            panic!("a second open must fail");
        };
        assert!(
            msg.contains("another ipam-gateway holds it (pid unknown)"),
            "{msg}"
        );

        // Once the holder is gone the file opens, and the pid file names the new holder.
        drop(first);
        let again = open(dir.path());
        assert_eq!(
            std::fs::read_to_string(pid_file(again.path())).expect("pid file"),
            format!("{pid}\n")
        );
    }

    #[test]
    fn an_unwritable_pid_file_does_not_stop_the_store_from_opening() {
        let dir = tempfile::tempdir().expect("dir");
        // A directory where the pid file would go: writing it fails, opening does not.
        std::fs::create_dir(pid_file(&dir.path().join("t.redb"))).expect("dir");
        let store = open(dir.path());
        assert!(pid_file(store.path()).is_dir(), "left as it was");
        let s = Settings::from_toml(CONFIG).expect("config");
        let BackendSettings::Embedded {
            networks, blocks, ..
        } = &s.backends[0]
        else {
            panic!("embedded backend expected");
        };
        let Err(IpamError::Internal(msg)) =
            EmbeddedBackend::open("other", store.path(), networks, blocks)
        else {
            panic!("a second open must fail");
        };
        assert!(
            msg.contains("another ipam-gateway holds it (pid unknown)"),
            "{msg}"
        );
    }

    pub(super) fn req(network: &str, owner: &str, address: Option<&str>) -> AllocateIn {
        AllocateIn {
            network: network.into(),
            owner: Owner::parse(owner).expect("owner"),
            address: address.map(|a| a.parse().expect("addr")),
            details: RecordDetails::default(),
        }
    }

    pub(super) const SMALL: &str = "default/10.0.0.0/29";
    pub(super) const V6: &str = "default/2001:db8::/64";

    #[tokio::test]
    async fn claim_returns_what_the_owner_holds_in_that_network_or_takes_one() {
        let dir = tempfile::tempdir().expect("dir");
        let b = open(dir.path());
        let cx = CallContext::default();
        let first = b
            .claim(&cx, &req(SMALL, "vm-1", None))
            .await
            .expect("claim");
        let Claim::Taken(first) = first else {
            panic!("a new owner takes an address: {first:?}");
        };
        assert_eq!(first.address.to_string(), "10.0.0.2");
        // The retry: the same address, nothing new taken.
        let again = b
            .claim(&cx, &req(SMALL, "vm-1", None))
            .await
            .expect("claim");
        assert_eq!(again, Claim::Held(first.clone()));
        let free = b.networks(&cx).await.expect("networks");
        let small = free.iter().find(|n| n.backend_id == SMALL).expect("small");
        assert_eq!(small.free, Some(4), "the retry took nothing");
        // Held elsewhere does not count: the owner gets one in this network too.
        let v6 = b
            .claim(&cx, &req(V6, "vm-1", None))
            .await
            .expect("claim v6");
        assert!(
            matches!(v6, Claim::Taken(ref a) if a.address.is_ipv6()),
            "{v6:?}"
        );
        // A specific address for an owner that holds another one: the held one comes back and
        // the service turns the mismatch into a conflict.
        let held = b
            .claim(&cx, &req(SMALL, "vm-1", Some("10.0.0.5")))
            .await
            .expect("claim");
        assert_eq!(held, Claim::Held(first));
        // Errors are those of allocate: a taken address is a conflict.
        let err = b
            .claim(&cx, &req(SMALL, "vm-2", Some("10.0.0.2")))
            .await
            .expect_err("taken");
        assert!(matches!(err, IpamError::Conflict(_)), "{err:?}");
        let err = b
            .claim(&cx, &req("default/10.9.9.0/24", "vm-2", None))
            .await
            .expect_err("no such network");
        assert!(matches!(err, IpamError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn ipv6_allocations_find_update_and_release() {
        let dir = tempfile::tempdir().expect("dir");
        let b = open(dir.path());
        let cx = CallContext::default();
        let a = b
            .allocate(&cx, &req(V6, "vm-6", None))
            .await
            .expect("alloc");
        assert_eq!(a.address.to_string(), "2001:db8::2");
        let found = b
            .find(&cx, &Lookup::Owner(Owner::parse("vm-6").expect("o")))
            .await
            .expect("find");
        assert_eq!(found, vec![a.clone()]);
        let changes = RecordChanges {
            aliases: None,
            mac: Some(Mac::parse("00:50:56:01:02:03").expect("mac")),
            hostname: Some("web-1".into()),
            description: None,
        };
        let updated = b
            .update(&cx, V6, a.address, &changes)
            .await
            .expect("update");
        assert_eq!(updated.details.hostname.as_deref(), Some("web-1"));
        let by_addr = b
            .find(
                &cx,
                &Lookup::Address {
                    address: a.address,
                    network: None,
                },
            )
            .await
            .expect("find");
        assert_eq!(
            by_addr[0].details.mac.as_ref().map(Mac::as_str),
            Some("00:50:56:01:02:03")
        );
        b.release(&cx, V6, a.address).await.expect("release");
        b.release(&cx, V6, a.address)
            .await
            .expect("release twice is fine");
        let gone = b
            .find(&cx, &Lookup::Owner(Owner::parse("vm-6").expect("o")))
            .await
            .expect("find");
        assert!(gone.is_empty());
        let err = b
            .update(&cx, V6, a.address, &changes)
            .await
            .expect_err("gone");
        assert!(matches!(err, IpamError::NotFound(_)));
    }

    #[tokio::test]
    async fn allocations_survive_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let cx = CallContext::default();
        let first = {
            let b = open(dir.path());
            b.allocate(&cx, &req(SMALL, "keep", None))
                .await
                .expect("alloc")
        };
        let b = open(dir.path());
        let found = b
            .find(&cx, &Lookup::Owner(Owner::parse("keep").expect("o")))
            .await
            .expect("find");
        assert_eq!(found, vec![first]);
        let nets = b.networks(&cx).await.expect("nets");
        let small = nets.iter().find(|n| n.backend_id == SMALL).expect("small");
        assert_eq!(small.free, Some(4), "6 hosts - gateway - 1 allocation");
    }

    #[tokio::test]
    async fn carving_takes_the_first_free_subnet_and_releasing_frees_it() {
        let dir = tempfile::tempdir().expect("dir");
        let b = open(dir.path());
        let cx = CallContext::default();
        let carve = |prefix: u8, owner: &str| CarveRequest {
            block: "block:pool".into(),
            prefix_len: prefix,
            owner: Owner::parse(owner).expect("o"),
            name: None,
            subnet: None,
        };
        let a = b
            .allocate_network(&cx, &carve(24, "n1"))
            .await
            .expect("carve");
        assert_eq!(a.cidr.to_string(), "10.64.0.0/24");
        assert_eq!(
            a.gateway.map(|g| g.to_string()).as_deref(),
            Some("10.64.0.1")
        );
        assert_eq!(a.range_start.to_string(), "10.64.0.2");
        let c = b
            .allocate_network(&cx, &carve(23, "n2"))
            .await
            .expect("carve");
        assert_eq!(c.cidr.to_string(), "10.64.2.0/23", "aligned past the /24");
        let d = b
            .allocate_network(&cx, &carve(24, "n3"))
            .await
            .expect("carve");
        assert_eq!(d.cidr.to_string(), "10.64.1.0/24", "fills the gap");
        let full = b
            .allocate_network(&cx, &carve(24, "n4"))
            .await
            .expect_err("full");
        assert!(matches!(full, IpamError::Exhausted(_)));
        let bad = b
            .allocate_network(&cx, &carve(16, "n5"))
            .await
            .expect_err("too big");
        assert!(matches!(bad, IpamError::InvalidInput { ref field, .. } if field == "prefix_len"));

        // A carved network holding an address cannot be deleted; once empty it can, twice.
        let held = b
            .allocate(&cx, &req(&a.backend_id, "vm", None))
            .await
            .expect("alloc in carved");
        assert!(matches!(
            b.release_network(&cx, &a.backend_id).await,
            Err(IpamError::Conflict(_))
        ));
        b.release(&cx, &a.backend_id, held.address)
            .await
            .expect("release");
        b.release_network(&cx, &a.backend_id).await.expect("delete");
        b.release_network(&cx, &a.backend_id)
            .await
            .expect("delete again is fine");
        let again = b
            .allocate_network(&cx, &carve(24, "n6"))
            .await
            .expect("carve");
        assert_eq!(again.cidr.to_string(), "10.64.0.0/24");
        assert!(matches!(
            b.release_network(&cx, SMALL).await,
            Err(IpamError::Conflict(_))
        ));
    }
}
