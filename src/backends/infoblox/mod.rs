//! The Infoblox NIOS WAPI backend (WAPI 2.x; the spec is `shared/contracts/infoblox-wapi.md`).
//!
//! - **Networks** are the `network` and `ipv6network` objects of the configured network views
//!   (each view is an address space) that carry every `network_filter` extensible attribute
//!   (`*vRA-Enabled=true`), read with paged searches. The gateway comes from the DHCP `routers`
//!   option, DNS servers and domain from `domain-name-servers` / `domain-name` (`dhcp6.…` for
//!   IPv6), extensible attributes become tags. Network ids are `<network view>/<cidr>`: stable,
//!   and all an allocation needs.
//! - **Free counts** (`free_counts`): by default from each IPv4 network's `utilization` percent
//!   (INFERRED from the WAPI object reference), asked for in the same paged listing, so a cold
//!   listing costs O(pages) requests; `"exact"` searches each network's used addresses
//!   (O(networks) requests); `"off"` counts nothing.
//! - **Blocks** are `networkcontainer` / `ipv6networkcontainer` objects picked by CIDR (`blocks`)
//!   or extensible attributes (`block_filter`).
//! - **Allocation** creates the record (`record:host`, `fixedaddress`, or `record:a` + `record:ptr`)
//!   whose address is the object-function form of `next_available_ip` (spec §5.3, W2
//!   `IpNextAvailableInfo`): `{"_object_function": "next_available_ip", "_result_field": "ips",
//!   "_object": "network" | "ipv6network", "_object_parameters": {"network": <cidr>,
//!   "network_view": <view>}, "_parameters": {"exclude": [<routers>]}}`, so the grid picks and
//!   reserves in one atomic call; a specific address is written as is. The owner is an
//!   extensible attribute (`owner_ea`) or a `[ipamgw-owner:…]` comment marker, found again with
//!   one search.
//! - **Routers are never handed out.** A grid's next-available-IP skips only addresses some
//!   object holds; on real grids the router is often named only by the network's `routers` DHCP
//!   option (or the `gateway_ea` attribute), with no record, so the grid would hand it out. Every
//!   router address of the network goes into the function's `exclude` list instead. Reserving
//!   the router with a fixed address (as carving does for the networks it creates) would also
//!   work, but it writes into networks the gateway does not own, needs write rights on
//!   `fixedaddress` whatever the record style, and costs a search (and maybe a create) per
//!   allocation; `exclude` costs nothing and changes nothing on the grid. The string form
//!   `func:nextavailableip:<cidr>,<view>` takes no `exclude`, so it is no longer used. A
//!   specific-address request for a router is refused (`address`). Release and update of a
//!   router address touch only records the gateway made (an owner marker): a leftover
//!   allocation of the router is released; a reservation or an operator's record is left alone
//!   (a conflict).
//! - **Release** deletes the record by `_ref` (a `404` means it is gone already); **update**
//!   `PUT`s the record (the MAC lives on the host address or the fixed address).
//! - **On-demand networks** are created with `func:nextavailablenetwork:<container>,<view>,<len>`,
//!   then given a `routers` option and a reservation for the gateway.

mod carve;
mod client;
pub mod config;
mod ids;
mod inventory;
mod mapping;
mod names;
mod records;
mod setup;
pub mod wire;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;

use self::client::{Api, Reply};
use self::config::InfobloxSettings;
use self::inventory::Inventory;
use super::common;
use super::http::Inventories;
use super::{Backend, CallContext};
use crate::domain::{
    AllocateIn, AllocationInfo, BackendStatus, BlockInfo, CarveRequest, IpamError, IpamResult,
    Lookup, NetworkInfo, RecordChanges,
};

/// How long the set of exposed networks is trusted for allocation routing.
const INVENTORY_TTL: Duration = Duration::from_secs(30);
/// The MAC of a fixed address that is a reservation, not a DHCP client.
const NO_MAC: &str = "00:00:00:00:00:00";

const NETWORK_FIELDS: &str = "network,network_view,comment,extattrs,options,network_container";
/// [`NETWORK_FIELDS`] plus `utilization` (percent; INFERRED from the WAPI object reference, not in
/// the contract), asked for on `network` with `free_counts = "utilization"`. Not on
/// `ipv6network`: the WAPI 2.13 schema lists no `utilization` there, and asking for an unknown
/// field fails the whole search.
const NETWORK_FIELDS_UTILIZATION: &str =
    "network,network_view,comment,extattrs,options,network_container,utilization";
const V6_NETWORK_FIELDS: &str = "network,network_view,comment,extattrs,options,network_container,domain_name,domain_name_servers";
const HOST_FIELDS: &str = "name,view,network_view,comment,extattrs,ipv4addrs,ipv6addrs";
const FIXED4_FIELDS: &str = "ipv4addr,mac,name,network_view,comment,extattrs";
const FIXED6_FIELDS: &str = "ipv6addr,duid,name,network_view,comment,extattrs";
const A_FIELDS: &str = "name,view,ipv4addr,comment,extattrs";
const AAAA_FIELDS: &str = "name,view,ipv6addr,comment,extattrs";
const PTR_FIELDS: &str = "ptrdname,view,ipv4addr,ipv6addr,comment,extattrs";
const ADDRESS_FIELDS: &str = "ip_address,network,network_view,status,types,objects";

fn q(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

pub struct InfobloxBackend {
    name: String,
    api: Arc<Api>,
    cfg: Arc<InfobloxSettings>,
    inventory: Inventories<Inventory>,
    /// The grid refused `_return_fields=…,utilization` once: listings stop asking for it and
    /// report free counts as unknown (`free_counts = "utilization"` only).
    no_utilization: AtomicBool,
}

impl fmt::Debug for InfobloxBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfobloxBackend")
            .field("name", &self.name)
            .field("url", &self.cfg.base_url)
            .field("wapi_version", &self.cfg.wapi_version)
            .field("auth", &self.api.auth_mode())
            .field("record_style", &self.cfg.record_style)
            .finish_non_exhaustive()
    }
}

impl InfobloxBackend {
    pub fn new(name: &str, settings: &InfobloxSettings) -> IpamResult<Self> {
        Ok(InfobloxBackend {
            name: name.to_owned(),
            api: Arc::new(Api::new(name, settings)?),
            cfg: Arc::new(settings.clone()),
            inventory: Inventories::new("infoblox", INVENTORY_TTL),
            no_utilization: AtomicBool::new(false),
        })
    }

    /// Sessions opened with the grid so far (one per credential, plus one per expiry).
    pub fn logins(&self) -> usize {
        self.api.logins()
    }

    fn bad_data(&self, what: &str, e: impl fmt::Display) -> IpamError {
        common::undecodable(&self.name, what, e)
    }

    fn error(&self, reply: &Reply, context: &str) -> IpamError {
        self.api.error(reply, context)
    }
}

#[async_trait]
impl Backend for InfobloxBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "infoblox"
    }

    fn atomic_allocation(&self) -> bool {
        true
    }

    /// The lower address was written first. WAPI refs are opaque (base64 of an internal key
    /// plus the name: `shared/contracts/infoblox-wapi.md` §2) and records carry no creation
    /// time the gateway reads, so the order comes from how addresses are handed out:
    /// `next_available_ip` (in the create) gives the lowest free address of the network atomically (§5.3),
    /// so of two records an owner's racing attempts took, the lower address was taken first.
    /// The addresses it skips (the network's gateway, excluded) are the same for every call, so
    /// they do not change that order. Residual, and not closed here: if a lower address is
    /// freed inside the race window (another owner released between the two attempts'
    /// allocations), the later attempt takes it and ranks first; when the earlier attempt has
    /// already looked again and answered with its own record before the later one was written,
    /// the owner keeps both and the two answers differ. A specific address asked for (`start`)
    /// is the same address on both attempts, so the second is refused, not a second record.
    /// Equal addresses (never two records of one network) fall back to the ref, so the order
    /// is total.
    fn first_written(&self, a: &AllocationInfo, b: &AllocationInfo) -> std::cmp::Ordering {
        a.address
            .cmp(&b.address)
            .then_with(|| a.reference.cmp(&b.reference))
    }

    fn supports_passthrough(&self) -> bool {
        matches!(self.cfg.auth, config::InfobloxAuth::Passthrough { .. })
    }

    /// One authenticated search of the network views (a handful of objects), not the listing.
    async fn ping(&self, cx: &CallContext) -> IpamResult<()> {
        self.api
            .get_all(cx, "networkview", &[], "name")
            .await
            .map(|_| ())
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
        self.allocate_record(cx, req).await
    }

    async fn find(&self, cx: &CallContext, lookup: &Lookup) -> IpamResult<Vec<AllocationInfo>> {
        self.find_records(cx, lookup).await
    }

    async fn release(&self, cx: &CallContext, network: &str, address: IpAddr) -> IpamResult<()> {
        self.release_record(cx, network, address).await
    }

    async fn update(
        &self,
        cx: &CallContext,
        network: &str,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<AllocationInfo> {
        self.update_record(cx, network, address, changes).await
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
