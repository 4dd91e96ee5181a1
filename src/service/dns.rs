//! DNS registration: which `[dns.<name>]` section serves each backend and network
//! ([`DnsRegistry`]), and the hooks the allocation, release and update paths call to check,
//! register, move and delete an address's names under each section's failure policy.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{AllocationRequest, Caller, Ipam};
use crate::dns::{DnsError, DnsUpdater, OnFailure};
use crate::domain::{Allocation, IpamError, IpamResult, NetworkId};

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
pub(super) fn dns_error(section: &str, e: DnsError) -> IpamError {
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

impl Ipam {
    /// The fully qualified DNS name for `host` in `network` (qualified with the network's
    /// domain), or a 400 naming `field`.
    pub(super) async fn dns_name(
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
    pub(super) fn dns_policy(
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
    pub(super) async fn dns_names(
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
    pub(super) async fn cidr_of(
        &self,
        caller: &Caller,
        network: &NetworkId,
    ) -> Option<ipnet::IpNet> {
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
    pub(super) async fn held_names(
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
    pub(super) async fn register_taken(
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
    pub(super) async fn check_request_names(
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
}
