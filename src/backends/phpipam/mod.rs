//! The phpIPAM backend (REST API of phpIPAM 1.4 – 1.8).
//!
//! - **Networks** are the subnets of the configured sections that match the `networks` selector
//!   (or all of them), plus every subnet carved from a block; folders are skipped. One
//!   `GET /sections/` and one `GET /sections/{id}/subnets/` per section give subnets with usage,
//!   nameservers and `gatewayId`; the gateway addresses and VLAN numbers are read once, all with
//!   one request each (one by one when a single one is missing), and remembered
//!   (`lookup_cache_secs`): a cold listing costs 3 + sections calls, a warm one 1 + sections.
//! - **Allocation** is `POST addresses/first_free/{subnet}/`, which reserves in one call; phpIPAM's
//!   unique key (ip, subnet) makes a lost race a 409 or a "Duplicate entry" 500, retried. A
//!   specific address is `POST addresses/`. The owner marker goes into `owner_field` (phpIPAM's
//!   `owner` by default). Before and after taking an address the owner is looked up in the
//!   candidate subnet only (`GET subnets/{id}/addresses/`): its cost is what that subnet holds.
//!   The native API's search by owner alone is the one filtered `GET addresses/`, which makes
//!   phpIPAM read every address it has.
//! - **Release and update** look the address up (`GET addresses/search/{ip}/`) and use its id;
//!   `DELETE addresses/{ip}/{subnet}/` is never used (it crashes 1.8.2 for unknown addresses).
//! - **On-demand networks**: `POST subnets/{block}/first_subnet/{mask}/`, a gateway address on
//!   the first host, the owner kept in the subnet description as `[ipamgw-owner:<owner>]`.
//! - **Column limits**: every text written fits its phpIPAM column ([`limits`]): descriptions are
//!   shortened with `…` and answered as written; a hostname or owner that cannot fit is a 400.

mod addresses;
mod carve;
mod client;
pub mod config;
mod inventory;
mod limits;
mod mapping;
mod setup;
pub mod wire;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::future::Cache;

use self::client::{Api, Reply};
use self::config::PhpipamSettings;
use self::inventory::Inventory;
use super::common;
use super::http::Inventories;
use super::{Backend, CallContext};
use crate::domain::{
    AllocateIn, AllocationInfo, BackendStatus, BlockInfo, CarveRequest, IpamError, IpamResult,
    Lookup, NetworkInfo, Owner, RecordChanges,
};

/// The description of the IPv6 subnet-router anycast address the gateway reserves.
const ANYCAST_DESCRIPTION: &str = "IPv6 subnet-router anycast address, reserved by ipam-gateway";
/// The description of a carved network's gateway address.
const GATEWAY_DESCRIPTION: &str = "gateway (ipam-gateway)";
/// How often a first-free allocation that lost a race to another writer is retried.
const RACE_RETRIES: usize = 8;
/// How long the set of exposed subnets is trusted for allocation routing.
const INVENTORY_TTL: Duration = Duration::from_secs(30);
/// Gateway addresses or VLANs missing from the lookup caches that a listing still looks up one
/// by one (one request and one row each); more are read with one request for all of them.
const LOOKUPS_ONE_BY_ONE: usize = 1;

pub struct PhpipamBackend {
    name: String,
    api: Arc<Api>,
    cfg: Arc<PhpipamSettings>,
    /// Gateway address id → address (an address's ip never changes in phpIPAM).
    gateways: Cache<u64, Option<IpAddr>>,
    /// VLAN id → VLAN number.
    vlans: Cache<u64, Option<u16>>,
    inventory: Inventories<Inventory>,
}

impl fmt::Debug for PhpipamBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhpipamBackend")
            .field("name", &self.name)
            .field("url", &self.cfg.base_url)
            .field("app_id", &self.cfg.app_id)
            .field("auth", &self.api.auth_mode())
            .finish_non_exhaustive()
    }
}

fn parse_id(what: &str, id: &str) -> IpamResult<u64> {
    id.trim()
        .parse()
        .map_err(|_| IpamError::NotFound(format!("{what} {id}")))
}

impl PhpipamBackend {
    pub fn new(name: &str, settings: &PhpipamSettings) -> IpamResult<Self> {
        let ttl = settings.lookup_cache_ttl;
        Ok(PhpipamBackend {
            name: name.to_owned(),
            api: Arc::new(Api::new(name, settings)?),
            cfg: Arc::new(settings.clone()),
            gateways: Cache::builder()
                .name("phpipam_gateways")
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            vlans: Cache::builder()
                .name("phpipam_vlans")
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            inventory: Inventories::new("phpipam", INVENTORY_TTL),
        })
    }

    fn upstream<D>(&self, r: &Reply<D>) -> IpamError {
        self.api.upstream(r)
    }

    fn bad_data(&self, what: &str, e: impl fmt::Display) -> IpamError {
        common::undecodable(&self.name, what, e)
    }
}

#[async_trait]
impl Backend for PhpipamBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "phpipam"
    }

    /// The lower address id was written first. phpIPAM's address id (`ipaddresses.id`, our
    /// `reference`) is an AUTO_INCREMENT column handed out by the database on insert: the
    /// recorded fills of one subnet got ids 18, 19, … 31 in the order they were posted
    /// (`fixtures/phpipam/README.md`, fixtures 96–97), and an id is never handed out twice. The
    /// owner is written in the same insert (`record_body`), so a record is visible to an owner
    /// lookup from the moment it has its id. Residual: MariaDB assigns the id when the insert
    /// starts and the row becomes visible when it commits, microseconds later; only an insert
    /// stalled in between for longer than another replica's whole allocate-then-look-up round
    /// trip could be seen after a record with a higher id. A record without a numeric id (not
    /// from phpIPAM) ranks after every one with one, then by address.
    fn first_written(&self, a: &AllocationInfo, b: &AllocationInfo) -> std::cmp::Ordering {
        let id = |x: &AllocationInfo| x.reference.as_deref().and_then(|r| r.parse::<u64>().ok());
        let key = |x: &AllocationInfo| (id(x).is_none(), id(x), x.address);
        key(a).cmp(&key(b))
    }

    fn supports_passthrough(&self) -> bool {
        matches!(self.cfg.auth, config::PhpipamAuth::Passthrough { .. })
    }

    /// One authenticated `GET sections/` (a handful of rows), not the subnet listing.
    async fn ping(&self, cx: &CallContext) -> IpamResult<()> {
        let reply = self.api.get(cx, "sections/", &[]).await?;
        if reply.ok() {
            Ok(())
        } else {
            Err(self.upstream(&reply))
        }
    }
    async fn check(&self, cx: &CallContext) -> IpamResult<BackendStatus> {
        self.status(cx).await
    }

    async fn networks(&self, cx: &CallContext) -> IpamResult<Vec<NetworkInfo>> {
        self.list_networks(cx).await
    }

    async fn blocks(&self, cx: &CallContext) -> IpamResult<Vec<BlockInfo>> {
        self.list_blocks(cx).await
    }

    async fn allocate(&self, cx: &CallContext, req: &AllocateIn) -> IpamResult<AllocationInfo> {
        self.allocate_address(cx, req).await
    }

    async fn find(&self, cx: &CallContext, lookup: &Lookup) -> IpamResult<Vec<AllocationInfo>> {
        self.find_addresses(cx, lookup).await
    }

    async fn find_owner_in(
        &self,
        cx: &CallContext,
        owner: &Owner,
        network: &str,
    ) -> IpamResult<Vec<AllocationInfo>> {
        self.owner_in_subnet(cx, owner, network).await
    }

    async fn release(&self, cx: &CallContext, network: &str, address: IpAddr) -> IpamResult<()> {
        self.release_address(cx, network, address).await
    }

    async fn update(
        &self,
        cx: &CallContext,
        network: &str,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<AllocationInfo> {
        self.update_address(cx, network, address, changes).await
    }

    async fn allocate_network(
        &self,
        cx: &CallContext,
        req: &CarveRequest,
    ) -> IpamResult<NetworkInfo> {
        self.carve_network(cx, req).await
    }

    async fn release_network(&self, cx: &CallContext, network: &str) -> IpamResult<()> {
        self.release_carved(cx, network).await
    }
}

#[cfg(test)]
mod tests {
    use super::limits::ADDRESS_DESCRIPTION;
    use super::*;

    #[test]
    fn the_gateways_own_descriptions_fit_without_shortening() {
        for d in [ANYCAST_DESCRIPTION, GATEWAY_DESCRIPTION] {
            assert!(ADDRESS_DESCRIPTION.fits(d), "{d}");
        }
    }
}
