//! What an address holds: finding and reading records, releasing addresses (one, or all an
//! owner holds) and changing them, with their DNS names moved or deleted first.

use std::net::IpAddr;

use super::dns::dns_error;
use super::locks::LockKey;
use super::{Caller, Ipam, timed};
use crate::dns::OnFailure;
use crate::domain::{Allocation, IpamError, IpamResult, Lookup, NetworkId, Owner, RecordChanges};

impl Ipam {
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
        self.update_record(caller, network, address, changes).await
    }

    /// The backend's part of an update: the record changes under its network's records lock.
    async fn update_record(
        &self,
        caller: &Caller,
        network: &NetworkId,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<Allocation> {
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
    pub(super) async fn release_address(
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
        match self.update_record(caller, network, address, changes).await {
            Ok(a) => Ok(a),
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
}
