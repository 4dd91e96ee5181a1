//! The `Backend` trait and the registry that builds backends from config.
//!
//! A backend is a translator: domain operations in, IPAM calls out. It holds no gateway policy
//! (caching, locking, idempotency, rollback live in `service`). A backend that lacks a capability
//! returns [`IpamError::Unsupported`]; it never panics and never silently does nothing.
//!
//! The optional capabilities (blocks and on-demand networks, changing a record) answer
//! `Unsupported` by default, so a test double writes only what it uses; the three real backends
//! override every one of them. The core (`check`, `networks`, `allocate`, `find`, `release`) has
//! no default: a backend must say how it does each.

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::domain::{
    AllocateIn, AllocationInfo, BackendStatus, BlockInfo, CarveRequest, IpamError, IpamResult,
    Lookup, NetworkInfo, Owner, RecordChanges,
};

mod common;
pub mod embedded;
pub mod http;
pub mod infoblox;
pub mod phpipam;
pub mod retry;
pub mod tls;

/// Credentials a caller handed over for passthrough auth. Never logged: `Debug` shows the user only.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[REDACTED]")
            .finish()
    }
}

/// What [`Backend::claim`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The owner already held this address in the network; nothing was taken.
    Held(AllocationInfo),
    /// Nothing was held; this address was taken for the owner.
    Taken(AllocationInfo),
}

/// Per-call context: who is calling, as far as the backend needs to know.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// Set when the gateway runs in passthrough mode: the backend authenticates as this user.
    pub credentials: Option<Credentials>,
}

#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// The configured name of this backend instance.
    fn name(&self) -> &str;

    /// `embedded`, `phpipam`, `infoblox`.
    fn kind(&self) -> &'static str;

    /// Whether callers' own credentials can be handed to this backend (passthrough auth).
    fn supports_passthrough(&self) -> bool {
        false
    }

    /// Whether taking the next free address is one atomic step on the backend (redb write
    /// transaction, Infoblox `next_available_ip` in the create). When it is not (phpIPAM's `first_free` looks
    /// up, then inserts, and a lost race surfaces as a duplicate to retry), the service serialises
    /// this process's allocations per network, so that only other replicas can race it.
    fn atomic_allocation(&self) -> bool {
        false
    }

    /// Whether [`Backend::claim`] is one atomic step on the backend (a single redb write
    /// transaction). The service then asks once instead of looking the owner up first, so an
    /// allocation costs one backend call instead of two and stays retry-safe across replicas.
    fn atomic_claim(&self) -> bool {
        false
    }

    /// The address `req.owner` already holds in `req.network` if there is one ([`Claim::Held`]),
    /// or else the one [`Backend::allocate`] takes for it ([`Claim::Taken`]). A backend that can
    /// decide both in one atomic step overrides this and says so in [`Backend::atomic_claim`];
    /// this default makes two calls (find, then allocate), which is retry-safe only because the
    /// service serialises each owner's requests in this process and the owner marker is on the
    /// record for the next lookup.
    async fn claim(&self, cx: &CallContext, req: &AllocateIn) -> IpamResult<Claim> {
        let held = self.find_owner_in(cx, &req.owner, &req.network).await?;
        match held.into_iter().min_by(|a, b| self.first_written(a, b)) {
            Some(a) => Ok(Claim::Held(a)),
            None => self.allocate(cx, req).await.map(Claim::Taken),
        }
    }

    /// What `owner` holds in one backend-local `network`. Its cost should be what that network
    /// holds, not what the whole IPAM holds: this is asked on every allocation. The default asks
    /// [`Backend::find`] for everything the owner holds and keeps that network's records.
    async fn find_owner_in(
        &self,
        cx: &CallContext,
        owner: &Owner,
        network: &str,
    ) -> IpamResult<Vec<AllocationInfo>> {
        let held = self.find(cx, &Lookup::Owner(owner.clone())).await?;
        Ok(held.into_iter().filter(|a| a.network == network).collect())
    }

    /// Which of two records one owner holds in one network was written first: `Less` when `a`
    /// was. When replicas race for one owner and both take an address, every replica keeps the
    /// record written first and releases its own if it is a later one (see
    /// `service::Ipam::converge`); that only converges if this order is the order in which the
    /// records became visible to a lookup, so a replica that already saw only its own record
    /// (and answered with it) holds the one every later lookup also ranks first. The order must
    /// be total and the same on every replica (it reads only the records, never local state).
    ///
    /// The default ranks the lower address first, then the reference: right for a store that
    /// hands out the lowest free address in one atomic step and never lets two records of one
    /// owner exist in one network (the embedded store claims in one redb transaction, so it never
    /// needs the order).
    fn first_written(&self, a: &AllocationInfo, b: &AllocationInfo) -> Ordering {
        a.address
            .cmp(&b.address)
            .then_with(|| a.reference.cmp(&b.reference))
    }

    /// Credentials, reachability, and the set-up every allocation needs: what this backend's
    /// config names must exist on the IPAM (extensible attributes, custom fields) and the gateway
    /// must be allowed to write. Such problems are not errors: they are listed in
    /// [`BackendStatus::problems`] (and what could not be verified without changing data in
    /// [`BackendStatus::unchecked`]), so `ipam-gateway check`, vRA's validate-endpoint and Avi's
    /// TestLogin fail with the same sentences ([`BackendStatus::setup_error`]). `Err` is for a
    /// backend that cannot be asked at all. Asked rarely (by people, not probes): it may cost a
    /// few requests, but must never change data. [`Backend::ping`] stays the cheap question.
    async fn check(&self, cx: &CallContext) -> IpamResult<BackendStatus>;

    /// Reachable and authenticated, as cheaply as the backend allows (one small call): what
    /// `/readyz` and passthrough authentication ask on every probe or new caller. The default
    /// runs the full [`Backend::check`].
    async fn ping(&self, cx: &CallContext) -> IpamResult<()> {
        self.check(cx).await.map(|_| ())
    }

    /// Every network this backend exposes.
    async fn networks(&self, cx: &CallContext) -> IpamResult<Vec<NetworkInfo>>;

    /// Every block (container for on-demand networks) this backend exposes. The default: none,
    /// [`IpamError::Unsupported`] (every real backend overrides it).
    async fn blocks(&self, _cx: &CallContext) -> IpamResult<Vec<BlockInfo>> {
        Err(unsupported(self, "has no blocks"))
    }

    /// Takes one address in one network: the next free one, or `req.address`. Must be atomic on the
    /// backend side (two gateways may call at once). Errors: `Exhausted`, `Conflict` (a specific
    /// address is taken), `NotFound` (no such network), `InvalidInput` (address outside the network).
    async fn allocate(&self, cx: &CallContext, req: &AllocateIn) -> IpamResult<AllocationInfo>;

    /// Allocations held by an owner, or holding an address.
    async fn find(&self, cx: &CallContext, lookup: &Lookup) -> IpamResult<Vec<AllocationInfo>>;

    /// Gives an address back. Releasing an address that is already free succeeds.
    async fn release(&self, cx: &CallContext, network: &str, address: IpAddr) -> IpamResult<()>;

    /// Changes the record kept with an address (MAC, hostname, description). The default:
    /// [`IpamError::Unsupported`] (every real backend overrides it).
    async fn update(
        &self,
        _cx: &CallContext,
        _network: &str,
        _address: IpAddr,
        _changes: &RecordChanges,
    ) -> IpamResult<AllocationInfo> {
        Err(unsupported(self, "cannot change records"))
    }

    /// Carves a new network from a block. The default: [`IpamError::Unsupported`] (every real
    /// backend overrides it).
    async fn allocate_network(
        &self,
        _cx: &CallContext,
        _req: &CarveRequest,
    ) -> IpamResult<NetworkInfo> {
        Err(unsupported(self, "has no on-demand networks"))
    }

    /// Deletes a network that was carved from a block. Deleting one that is already gone succeeds.
    /// The default: [`IpamError::Unsupported`] (every real backend overrides it).
    async fn release_network(&self, _cx: &CallContext, _network: &str) -> IpamResult<()> {
        Err(unsupported(self, "has no on-demand networks"))
    }
}

/// The error of a capability a backend lacks: `backend '<name>' (<kind>) <what>`.
fn unsupported<B: Backend + ?Sized>(backend: &B, what: &str) -> IpamError {
    IpamError::Unsupported(format!(
        "backend '{}' ({}) {what}",
        backend.name(),
        backend.kind()
    ))
}

/// Builds a backend from its validated settings: the one place that knows every kind.
pub fn build(
    settings: &crate::config::BackendSettings,
) -> crate::domain::IpamResult<std::sync::Arc<dyn Backend>> {
    use crate::config::BackendSettings;
    match settings {
        BackendSettings::Embedded {
            name,
            path,
            networks,
            blocks,
        } => Ok(std::sync::Arc::new(embedded::EmbeddedBackend::open(
            name, path, networks, blocks,
        )?)),
        BackendSettings::Phpipam { name, settings } => Ok(std::sync::Arc::new(
            phpipam::PhpipamBackend::new(name, settings)?,
        )),
        BackendSettings::Infoblox { name, settings } => Ok(std::sync::Arc::new(
            infoblox::InfobloxBackend::new(name, settings)?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that writes only the core: what a test double needs to compile.
    #[derive(Debug)]
    struct CoreOnly;

    #[async_trait]
    impl Backend for CoreOnly {
        fn name(&self) -> &str {
            "bare"
        }
        fn kind(&self) -> &'static str {
            "double"
        }
        async fn check(&self, _cx: &CallContext) -> IpamResult<BackendStatus> {
            Err(IpamError::Internal("not asked".into()))
        }
        async fn networks(&self, _cx: &CallContext) -> IpamResult<Vec<NetworkInfo>> {
            Ok(Vec::new())
        }
        async fn allocate(
            &self,
            _cx: &CallContext,
            _req: &AllocateIn,
        ) -> IpamResult<AllocationInfo> {
            Err(IpamError::Exhausted("not asked".into()))
        }
        async fn find(&self, _cx: &CallContext, _l: &Lookup) -> IpamResult<Vec<AllocationInfo>> {
            Ok(Vec::new())
        }
        async fn release(&self, _cx: &CallContext, _n: &str, _a: IpAddr) -> IpamResult<()> {
            Ok(())
        }
    }

    fn unsupported_message<T: fmt::Debug>(r: IpamResult<T>) -> String {
        match r {
            Err(IpamError::Unsupported(m)) => m,
            other => panic!("not Unsupported: {other:?}"),
        }
    }

    #[tokio::test]
    async fn optional_capabilities_answer_unsupported_naming_the_backend() {
        let b: &dyn Backend = &CoreOnly;
        let cx = CallContext::default();
        let owner = Owner::parse("o").expect("owner");
        assert_eq!(
            unsupported_message(b.blocks(&cx).await),
            "backend 'bare' (double) has no blocks"
        );
        let address: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(
            unsupported_message(b.update(&cx, "n", address, &RecordChanges::default()).await),
            "backend 'bare' (double) cannot change records"
        );
        let carve = CarveRequest {
            block: "b".into(),
            prefix_len: 28,
            owner,
            name: None,
            subnet: None,
        };
        assert_eq!(
            unsupported_message(b.allocate_network(&cx, &carve).await),
            "backend 'bare' (double) has no on-demand networks"
        );
        assert_eq!(
            unsupported_message(b.release_network(&cx, "n").await),
            "backend 'bare' (double) has no on-demand networks"
        );
    }
}
