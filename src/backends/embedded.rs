//! The embedded backend: networks, on-demand networks and allocations in one redb file.
//!
//! Every change is one redb write transaction committed with immediate durability, so an
//! acknowledged allocation survives `kill -9`. redb admits one writer at a time, which makes
//! "find the next free address and take it" atomic without any lock of ours; the file lock keeps a
//! second process out.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};

use super::{Backend, CallContext, Claim};
use crate::domain::{
    AllocateIn, AllocationInfo, BackendStatus, BlockInfo, CarveRequest, Family, IpamError,
    IpamResult, Lookup, NetworkInfo, Owner, RecordChanges, RecordDetails,
};
use crate::ipmath::{WholeBlock, check_carve_prefix, usable_range};

/// redb's page cache: bounded (its default is 1 GiB, which a long-running gateway would fill
/// with pages of a file it reads a few at a time).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// backend id (`space/cidr`) → JSON [`StoredNetwork`].
const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
/// (network backend id, address as u128) → JSON [`StoredRecord`].
const ADDRESSES: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("addresses");
/// owner → (network backend id, address): the index behind idempotent retries.
const OWNERS: MultimapTableDefinition<&str, (&str, u128)> = MultimapTableDefinition::new("owners");

#[derive(Debug, Serialize, Deserialize)]
struct StoredNetwork {
    info: NetworkInfo,
    /// Seeded from config (replaced at every start) rather than carved from a block.
    seeded: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredRecord {
    owner: Option<Owner>,
    #[serde(flatten)]
    details: RecordDetails,
}

#[derive(Debug, Clone)]
pub struct EmbeddedBackend {
    name: String,
    path: PathBuf,
    db: Arc<Database>,
    blocks: Arc<Vec<BlockInfo>>,
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(family: Family, v: u128) -> IpAddr {
    match family {
        // Callers only pass values that came from an IPv4 address of the same network.
        Family::V4 => IpAddr::from(u32::try_from(v).unwrap_or(u32::MAX).to_be_bytes()),
        Family::V6 => IpAddr::from(v.to_be_bytes()),
    }
}

fn net_bounds(net: &IpNet) -> (u128, u128) {
    (to_u128(net.network()), to_u128(net.broadcast()))
}

/// The file next to the data file that names the process holding it (`local.redb.pid` for
/// `local.redb`). Written after every successful open and never removed: a stale one is
/// overwritten by the next process that gets the file lock, and is only read when the lock is
/// held by someone, so it names the holder unless that one died without a successor.
pub fn pid_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pid");
    PathBuf::from(name)
}

/// Records this process as the holder of the data file ([`pid_file`]). Only a hint for the
/// message a second gateway gives (redb's file lock is what keeps it out), so a failure to
/// write it is logged, not fatal.
fn write_pid_file(name: &str, path: &Path) {
    let file = pid_file(path);
    if let Err(e) = std::fs::write(&file, format!("{}\n", std::process::id())) {
        tracing::warn!(backend = %name, file = %file.display(), error = %e,
            "cannot record this process's pid next to the data file");
    }
}

/// What opening a data file whose lock another open holds says, instead of redb's
/// `Database already open. Cannot acquire lock.`: who holds it, with its pid when known.
fn held_elsewhere(name: &str, path: &Path) -> String {
    let holder = std::fs::read_to_string(pid_file(path))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let who = match holder {
        Some(pid) if pid == std::process::id() => {
            format!("this ipam-gateway (pid {pid}) already has it open for another backend")
        }
        Some(pid) => format!("another ipam-gateway (pid {pid}) holds it"),
        None => "another ipam-gateway holds it (pid unknown)".to_owned(),
    };
    format!(
        "backend {name}: the data file {} is in use: {who}; stop that one, or give this one \
         its own data file (backends.{name}.path)",
        path.display()
    )
}

impl EmbeddedBackend {
    /// Opens (or creates) the data file and brings the configured networks up to date. A data
    /// file is one process's: a second open fails naming the holder ([`held_elsewhere`]).
    pub fn open(
        name: &str,
        path: &Path,
        networks: &[NetworkInfo],
        blocks: &[BlockInfo],
    ) -> IpamResult<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                IpamError::Internal(format!(
                    "backend {name}: cannot create {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let db = match redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
        {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(IpamError::Internal(held_elsewhere(name, path)));
            }
            Err(e) => {
                return Err(IpamError::Internal(format!(
                    "backend {name}: cannot open {}: {e}",
                    path.display()
                )));
            }
        };
        write_pid_file(name, path);
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
                let stored: StoredNetwork =
                    serde_json::from_slice(v.value()).map_err(|e| self.store_err(e))?;
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
                let stored = StoredNetwork {
                    info: n.clone(),
                    seeded: true,
                };
                let bytes = serde_json::to_vec(&stored).map_err(|e| self.store_err(e))?;
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

    fn load_network(
        &self,
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        id: &str,
    ) -> IpamResult<Option<StoredNetwork>> {
        match table.get(id).map_err(|e| self.store_err(e))? {
            Some(v) => Ok(Some(
                serde_json::from_slice(v.value()).map_err(|e| self.store_err(e))?,
            )),
            None => Ok(None),
        }
    }

    fn count_in_range(
        &self,
        table: &impl ReadableTable<(&'static str, u128), &'static [u8]>,
        n: &NetworkInfo,
    ) -> IpamResult<u128> {
        let (lo, hi) = (to_u128(n.range_start), to_u128(n.range_end));
        let mut count = 0u128;
        for e in table
            .range((n.backend_id.as_str(), lo)..=(n.backend_id.as_str(), hi))
            .map_err(|e| self.store_err(e))?
        {
            e.map_err(|e| self.store_err(e))?;
            count += 1;
        }
        Ok(count)
    }

    fn free_count(
        &self,
        table: &impl ReadableTable<(&'static str, u128), &'static [u8]>,
        n: &NetworkInfo,
    ) -> IpamResult<u64> {
        let (lo, hi) = (to_u128(n.range_start), to_u128(n.range_end));
        let mut size = hi - lo + 1;
        if let Some(gw) = n.gateway.map(to_u128)
            && (lo..=hi).contains(&gw)
        {
            size -= 1;
        }
        let used = self.count_in_range(table, n)?;
        Ok(u64::try_from(size.saturating_sub(used)).unwrap_or(u64::MAX))
    }

    fn allocate_sync(&self, req: &AllocateIn) -> IpamResult<AllocationInfo> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        let info = self.allocate_in(&txn, req)?;
        txn.commit().map_err(|e| self.store_err(e))?;
        Ok(info)
    }

    /// The owner's address in the network, or a new one for it, in one write transaction: no
    /// other writer can take an address for the same owner in between.
    fn claim_sync(&self, req: &AllocateIn) -> IpamResult<Claim> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        let held = self.held_by(
            &txn.open_multimap_table(OWNERS)
                .map_err(|e| self.store_err(e))?,
            &txn.open_table(NETWORKS).map_err(|e| self.store_err(e))?,
            &txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?,
            &req.owner,
            Some(&req.network),
        )?;
        if let Some(a) = held.into_iter().next() {
            // Nothing was written: dropping the transaction aborts it.
            return Ok(Claim::Held(a));
        }
        let info = self.allocate_in(&txn, req)?;
        txn.commit().map_err(|e| self.store_err(e))?;
        Ok(Claim::Taken(info))
    }

    fn allocate_in(
        &self,
        txn: &redb::WriteTransaction,
        req: &AllocateIn,
    ) -> IpamResult<AllocationInfo> {
        let info = {
            let networks = txn.open_table(NETWORKS).map_err(|e| self.store_err(e))?;
            let net = self
                .load_network(&networks, &req.network)?
                .ok_or_else(|| IpamError::NotFound(format!("network {}", req.network)))?
                .info;
            let family = Family::of(&net.cidr);
            let mut addrs = txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?;
            let gateway = net.gateway.map(to_u128);
            let chosen = match req.address {
                Some(a) => {
                    let (lo, hi) = usable_range(&net.cidr);
                    if Family::of_addr(&a) != family || !net.cidr.contains(&a) {
                        return Err(IpamError::invalid(
                            "address",
                            format!("{a} is not in network {} ({})", net.name, net.cidr),
                        ));
                    }
                    let v = to_u128(a);
                    if v < to_u128(lo) || v > to_u128(hi) {
                        return Err(IpamError::invalid(
                            "address",
                            format!("{a} is the network or broadcast address of {}", net.cidr),
                        ));
                    }
                    if Some(v) == gateway {
                        return Err(IpamError::Conflict(format!(
                            "{a} is the gateway of {}",
                            net.cidr
                        )));
                    }
                    if let Some(existing) = addrs
                        .get((net.backend_id.as_str(), v))
                        .map_err(|e| self.store_err(e))?
                    {
                        let rec: StoredRecord = serde_json::from_slice(existing.value())
                            .map_err(|e| self.store_err(e))?;
                        return Err(IpamError::Conflict(match rec.owner {
                            Some(o) if o == req.owner => {
                                format!("{a} is already held by this owner ({o})")
                            }
                            _ => format!("{a} in {} is already allocated", net.cidr),
                        }));
                    }
                    v
                }
                None => self.next_free(&addrs, &net, gateway)?,
            };
            let record = StoredRecord {
                owner: Some(req.owner.clone()),
                details: req.details.clone(),
            };
            let bytes = serde_json::to_vec(&record).map_err(|e| self.store_err(e))?;
            addrs
                .insert((net.backend_id.as_str(), chosen), bytes.as_slice())
                .map_err(|e| self.store_err(e))?;
            let mut owners = txn
                .open_multimap_table(OWNERS)
                .map_err(|e| self.store_err(e))?;
            owners
                .insert(req.owner.as_str(), (net.backend_id.as_str(), chosen))
                .map_err(|e| self.store_err(e))?;
            AllocationInfo {
                network: net.backend_id.clone(),
                address: from_u128(family, chosen),
                owner: Some(req.owner.clone()),
                details: req.details.clone(),
                reference: None,
            }
        };
        Ok(info)
    }

    /// Lowest address of the range that is neither allocated nor the gateway.
    fn next_free(
        &self,
        addrs: &impl ReadableTable<(&'static str, u128), &'static [u8]>,
        net: &NetworkInfo,
        gateway: Option<u128>,
    ) -> IpamResult<u128> {
        let (lo, hi) = (to_u128(net.range_start), to_u128(net.range_end));
        let mut candidate = lo;
        let skip_gateway = |c: u128| {
            if Some(c) == gateway {
                c.checked_add(1)
            } else {
                Some(c)
            }
        };
        let exhausted = || {
            IpamError::Exhausted(format!(
                "network {} ({}) has no free address",
                net.name, net.cidr
            ))
        };
        candidate = skip_gateway(candidate).ok_or_else(exhausted)?;
        for entry in addrs
            .range((net.backend_id.as_str(), lo)..=(net.backend_id.as_str(), hi))
            .map_err(|e| self.store_err(e))?
        {
            let (k, _) = entry.map_err(|e| self.store_err(e))?;
            let taken = k.value().1;
            if taken > candidate {
                break;
            }
            if taken == candidate {
                candidate = candidate.checked_add(1).ok_or_else(exhausted)?;
                candidate = skip_gateway(candidate).ok_or_else(exhausted)?;
            }
        }
        if candidate > hi {
            return Err(exhausted());
        }
        Ok(candidate)
    }

    fn read_record(
        &self,
        addrs: &impl ReadableTable<(&'static str, u128), &'static [u8]>,
        network: &str,
        family: Family,
        v: u128,
    ) -> IpamResult<Option<AllocationInfo>> {
        let Some(bytes) = addrs.get((network, v)).map_err(|e| self.store_err(e))? else {
            return Ok(None);
        };
        let rec: StoredRecord =
            serde_json::from_slice(bytes.value()).map_err(|e| self.store_err(e))?;
        Ok(Some(AllocationInfo {
            network: network.to_owned(),
            address: from_u128(family, v),
            owner: rec.owner,
            details: rec.details,
            reference: None,
        }))
    }

    /// What `owner` holds (in network `only`, when given), read through the owner index of
    /// whichever transaction the tables belong to.
    fn held_by(
        &self,
        owners: &impl ReadableMultimapTable<&'static str, (&'static str, u128)>,
        networks: &impl ReadableTable<&'static str, &'static [u8]>,
        addrs: &impl ReadableTable<(&'static str, u128), &'static [u8]>,
        owner: &Owner,
        only: Option<&str>,
    ) -> IpamResult<Vec<AllocationInfo>> {
        let mut out = Vec::new();
        for v in owners.get(owner.as_str()).map_err(|e| self.store_err(e))? {
            let v = v.map_err(|e| self.store_err(e))?;
            let (net_id, addr) = v.value();
            if only.is_some_and(|n| n != net_id) {
                continue;
            }
            let Some(net) = self.load_network(networks, net_id)? else {
                continue;
            };
            if let Some(a) = self.read_record(addrs, net_id, Family::of(&net.info.cidr), addr)? {
                out.push(a);
            }
        }
        Ok(out)
    }

    fn find_sync(&self, lookup: &Lookup) -> IpamResult<Vec<AllocationInfo>> {
        let txn = self.db.begin_read().map_err(|e| self.store_err(e))?;
        let networks = txn.open_table(NETWORKS).map_err(|e| self.store_err(e))?;
        let addrs = txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?;
        let mut out = Vec::new();
        match lookup {
            Lookup::Owner(owner) => {
                let owners = txn
                    .open_multimap_table(OWNERS)
                    .map_err(|e| self.store_err(e))?;
                out = self.held_by(&owners, &networks, &addrs, owner, None)?;
            }
            Lookup::Address { address, network } => {
                let v = to_u128(*address);
                let family = Family::of_addr(address);
                let candidates: Vec<String> = match network {
                    Some(id) => vec![id.clone()],
                    None => {
                        let mut ids = Vec::new();
                        for e in networks.iter().map_err(|e| self.store_err(e))? {
                            let (k, val) = e.map_err(|e| self.store_err(e))?;
                            let n: StoredNetwork = serde_json::from_slice(val.value())
                                .map_err(|e| self.store_err(e))?;
                            if n.info.cidr.contains(address) {
                                ids.push(k.value().to_owned());
                            }
                        }
                        ids
                    }
                };
                for id in candidates {
                    if let Some(a) = self.read_record(&addrs, &id, family, v)? {
                        out.push(a);
                    }
                }
            }
        }
        Ok(out)
    }

    fn release_sync(&self, network: &str, address: IpAddr) -> IpamResult<()> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        {
            let mut addrs = txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?;
            let v = to_u128(address);
            let removed = addrs
                .remove((network, v))
                .map_err(|e| self.store_err(e))?
                .map(|g| serde_json::from_slice::<StoredRecord>(g.value()));
            if let Some(Ok(StoredRecord {
                owner: Some(owner), ..
            })) = removed
            {
                let mut owners = txn
                    .open_multimap_table(OWNERS)
                    .map_err(|e| self.store_err(e))?;
                owners
                    .remove(owner.as_str(), (network, v))
                    .map_err(|e| self.store_err(e))?;
            }
        }
        txn.commit().map_err(|e| self.store_err(e))
    }

    fn update_sync(
        &self,
        network: &str,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<AllocationInfo> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        let out = {
            let mut addrs = txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?;
            let v = to_u128(address);
            let mut rec: StoredRecord =
                match addrs.get((network, v)).map_err(|e| self.store_err(e))? {
                    Some(g) => serde_json::from_slice(g.value()).map_err(|e| self.store_err(e))?,
                    None => {
                        return Err(IpamError::NotFound(format!(
                            "{address} is not allocated in network {network}"
                        )));
                    }
                };
            if let Some(h) = &changes.hostname {
                rec.details.hostname = Some(h.clone());
            }
            if let Some(d) = &changes.description {
                rec.details.description = Some(d.clone());
            }
            if let Some(m) = &changes.mac {
                rec.details.mac = Some(m.clone());
            }
            let bytes = serde_json::to_vec(&rec).map_err(|e| self.store_err(e))?;
            addrs
                .insert((network, v), bytes.as_slice())
                .map_err(|e| self.store_err(e))?;
            AllocationInfo {
                network: network.to_owned(),
                address,
                owner: rec.owner,
                details: rec.details,
                reference: None,
            }
        };
        txn.commit().map_err(|e| self.store_err(e))?;
        Ok(out)
    }

    fn networks_sync(&self) -> IpamResult<Vec<NetworkInfo>> {
        let txn = self.db.begin_read().map_err(|e| self.store_err(e))?;
        let networks = txn.open_table(NETWORKS).map_err(|e| self.store_err(e))?;
        let addrs = txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?;
        let mut out = Vec::with_capacity(networks.len().map_err(|e| self.store_err(e))? as usize);
        for e in networks.iter().map_err(|e| self.store_err(e))? {
            let (_, v) = e.map_err(|e| self.store_err(e))?;
            let mut n: StoredNetwork =
                serde_json::from_slice(v.value()).map_err(|e| self.store_err(e))?;
            n.info.free = Some(self.free_count(&addrs, &n.info)?);
            out.push(n.info);
        }
        Ok(out)
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
                let n: StoredNetwork =
                    serde_json::from_slice(v.value()).map_err(|e| self.store_err(e))?;
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
            let stored = StoredNetwork {
                info: info.clone(),
                seeded: false,
            };
            let bytes = serde_json::to_vec(&stored).map_err(|e| self.store_err(e))?;
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
mod tests {
    use super::*;
    use crate::config::{BackendSettings, Settings};
    use crate::domain::Mac;

    const CONFIG: &str = r#"
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

    fn open(dir: &Path) -> EmbeddedBackend {
        let s = Settings::from_toml(CONFIG).expect("config");
        let BackendSettings::Embedded {
            networks, blocks, ..
        } = &s.backends[0]
        else {
            panic!("embedded backend expected");
        };
        EmbeddedBackend::open("local", &dir.join("t.redb"), networks, blocks).expect("open")
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

    fn req(network: &str, owner: &str, address: Option<&str>) -> AllocateIn {
        AllocateIn {
            network: network.into(),
            owner: Owner::parse(owner).expect("owner"),
            address: address.map(|a| a.parse().expect("addr")),
            details: RecordDetails::default(),
        }
    }

    const SMALL: &str = "default/10.0.0.0/29";
    const V6: &str = "default/2001:db8::/64";

    #[tokio::test]
    async fn next_free_skips_the_gateway_fills_gaps_and_exhausts() {
        let dir = tempfile::tempdir().expect("dir");
        let b = open(dir.path());
        let cx = CallContext::default();
        let mut got = Vec::new();
        for i in 0..5 {
            let a = b
                .allocate(&cx, &req(SMALL, &format!("o{i}"), None))
                .await
                .expect("alloc");
            got.push(a.address.to_string());
        }
        assert_eq!(
            got,
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
        let err = b
            .allocate(&cx, &req(SMALL, "o9", None))
            .await
            .expect_err("full");
        assert!(matches!(err, IpamError::Exhausted(_)), "{err:?}");
        b.release(&cx, SMALL, "10.0.0.4".parse().expect("ip"))
            .await
            .expect("release");
        let again = b
            .allocate(&cx, &req(SMALL, "o10", None))
            .await
            .expect("alloc");
        assert_eq!(again.address.to_string(), "10.0.0.4", "gap is reused");
    }

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
    async fn concurrent_claims_for_one_owner_take_one_address() {
        let dir = tempfile::tempdir().expect("dir");
        let b = Arc::new(open(dir.path()));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                b.claim(&CallContext::default(), &req(SMALL, "same", None))
                    .await
                    .expect("claim")
            }));
        }
        let mut addresses = std::collections::HashSet::new();
        let mut taken = 0;
        for t in tasks {
            match t.await.expect("task") {
                Claim::Taken(a) => {
                    taken += 1;
                    addresses.insert(a.address);
                }
                Claim::Held(a) => {
                    addresses.insert(a.address);
                }
            }
        }
        assert_eq!(taken, 1, "exactly one claim takes an address");
        assert_eq!(addresses.len(), 1, "every claim sees the same address");
    }

    #[tokio::test]
    async fn specific_addresses_are_checked() {
        let dir = tempfile::tempdir().expect("dir");
        let b = open(dir.path());
        let cx = CallContext::default();
        let a = b
            .allocate(&cx, &req(SMALL, "a", Some("10.0.0.6")))
            .await
            .expect("specific");
        assert_eq!(a.address.to_string(), "10.0.0.6");
        let taken = b
            .allocate(&cx, &req(SMALL, "b", Some("10.0.0.6")))
            .await
            .expect_err("taken");
        assert!(matches!(taken, IpamError::Conflict(_)), "{taken:?}");
        let gw = b
            .allocate(&cx, &req(SMALL, "b", Some("10.0.0.1")))
            .await
            .expect_err("gw");
        assert!(matches!(gw, IpamError::Conflict(ref m) if m.contains("gateway")));
        let outside = b
            .allocate(&cx, &req(SMALL, "b", Some("10.0.1.1")))
            .await
            .expect_err("outside");
        assert!(matches!(outside, IpamError::InvalidInput { ref field, .. } if field == "address"));
        let bcast = b
            .allocate(&cx, &req(SMALL, "b", Some("10.0.0.7")))
            .await
            .expect_err("broadcast");
        assert!(matches!(bcast, IpamError::InvalidInput { .. }));
        let missing = b
            .allocate(&cx, &req("default/10.9.0.0/24", "b", None))
            .await
            .expect_err("no net");
        assert!(matches!(missing, IpamError::NotFound(_)));
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
