//! Addresses: taking the next free (or a given) one, the owner index behind idempotent claims,
//! finding, updating and releasing them, and the free counts of network listings.

use std::net::IpAddr;

use redb::{ReadableDatabase, ReadableMultimapTable, ReadableTable, ReadableTableMetadata};

use super::records::{self, StoredAllocationV1};
use super::store::{ADDRESSES, NETWORKS, OWNERS, from_u128, to_u128};
use super::{EmbeddedBackend, NetworkRow};
use crate::backends::Claim;
use crate::domain::{
    AllocateIn, AllocationInfo, Family, IpamError, IpamResult, Lookup, NetworkInfo, Owner,
    RecordChanges,
};
use crate::ipmath::usable_range;

impl EmbeddedBackend {
    pub(super) fn load_network(
        &self,
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        id: &str,
    ) -> IpamResult<Option<NetworkRow>> {
        match table.get(id).map_err(|e| self.store_err(e))? {
            Some(v) => Ok(Some(self.network_row(v.value())?)),
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

    pub(super) fn allocate_sync(&self, req: &AllocateIn) -> IpamResult<AllocationInfo> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        let info = self.allocate_in(&txn, req)?;
        txn.commit().map_err(|e| self.store_err(e))?;
        Ok(info)
    }

    /// The owner's address in the network, or a new one for it, in one write transaction: no
    /// other writer can take an address for the same owner in between.
    pub(super) fn claim_sync(&self, req: &AllocateIn) -> IpamResult<Claim> {
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
                        let rec = self.address_row(existing.value())?;
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
            let bytes = self.address_bytes(Some(&req.owner), &req.details)?;
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
        let rec = self.address_row(bytes.value())?;
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

    pub(super) fn find_sync(&self, lookup: &Lookup) -> IpamResult<Vec<AllocationInfo>> {
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
                            let n = self.network_row(val.value())?;
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

    pub(super) fn release_sync(&self, network: &str, address: IpAddr) -> IpamResult<()> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        {
            let mut addrs = txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?;
            let v = to_u128(address);
            let removed = addrs
                .remove((network, v))
                .map_err(|e| self.store_err(e))?
                .map(|g| records::decode::<StoredAllocationV1>("addresses", g.value()));
            // The owner as stored, unchecked: the index entry goes with the record whatever
            // the domain now thinks of its text.
            if let Some(Ok(StoredAllocationV1 {
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

    pub(super) fn update_sync(
        &self,
        network: &str,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<AllocationInfo> {
        let txn = self.db.begin_write().map_err(|e| self.store_err(e))?;
        let out = {
            let mut addrs = txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?;
            let v = to_u128(address);
            let mut rec = match addrs.get((network, v)).map_err(|e| self.store_err(e))? {
                Some(g) => self.address_row(g.value())?,
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
            if let Some(n) = &changes.aliases {
                rec.details.aliases = n.clone();
            }
            let bytes = self.address_bytes(rec.owner.as_ref(), &rec.details)?;
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

    pub(super) fn networks_sync(&self) -> IpamResult<Vec<NetworkInfo>> {
        let txn = self.db.begin_read().map_err(|e| self.store_err(e))?;
        let networks = txn.open_table(NETWORKS).map_err(|e| self.store_err(e))?;
        let addrs = txn.open_table(ADDRESSES).map_err(|e| self.store_err(e))?;
        let mut out = Vec::with_capacity(networks.len().map_err(|e| self.store_err(e))? as usize);
        for e in networks.iter().map_err(|e| self.store_err(e))? {
            let (_, v) = e.map_err(|e| self.store_err(e))?;
            let mut n = self.network_row(v.value())?;
            n.info.free = Some(self.free_count(&addrs, &n.info)?);
            out.push(n.info);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::{SMALL, open, req};
    use super::super::{CallContext, Claim};
    use crate::backends::Backend;
    use crate::domain::IpamError;

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
}
