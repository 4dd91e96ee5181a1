//! Allocate, find, update and release address records: `POST addresses/first_free/{subnet}/`
//! (retried when another writer wins the race) or `POST addresses/` for a specific address, the
//! owner lookups, and the bodies fitted to phpIPAM's columns ([`super::limits`]).

use std::net::IpAddr;

use ipnet::IpNet;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::limits::{
    ADDRESS_DESCRIPTION, ADDRESS_HOSTNAME, ADDRESS_MAC, ADDRESS_NOTE, ADDRESS_OWNER,
};
use super::mapping::range_of;
use super::wire::{Address, Subnet, list, value_text};
use super::{ANYCAST_DESCRIPTION, PhpipamBackend, RACE_RETRIES, parse_id};
use crate::backends::CallContext;
use crate::backends::common::{check_specific, default_description, not_allocated};
use crate::domain::{
    AllocateIn, AllocationInfo, IpamError, IpamResult, Lookup, Owner, RecordChanges, RecordDetails,
};

/// What starts the line of an address's `note` that lists its further DNS names
/// ([`RecordDetails::aliases`]), separated by spaces. The description would cut them (64
/// characters); `note` is `text` ([`ADDRESS_NOTE`]).
const NAMES_PREFIX: &str = "ipamgw-names:";

/// The `note` that keeps `aliases`, or `None` when there are none.
pub(super) fn names_note(aliases: &[String]) -> Option<String> {
    (!aliases.is_empty()).then(|| format!("{NAMES_PREFIX} {}", aliases.join(" ")))
}

/// `note` with its names line replaced by that of `aliases` (removed when there are none);
/// the note's other lines, someone else's text, are kept.
fn renoted(note: Option<&str>, aliases: &[String]) -> String {
    let others = note
        .into_iter()
        .flat_map(str::lines)
        .filter(|l| !l.trim().starts_with(NAMES_PREFIX));
    let mut lines: Vec<String> = others.map(str::to_owned).collect();
    lines.extend(names_note(aliases));
    lines.join("\n")
}

/// The names a `note` written by [`names_note`] lists; none when the note is someone else's.
pub(super) fn noted_names(note: Option<&str>) -> Vec<String> {
    note.into_iter()
        .flat_map(str::lines)
        .filter_map(|l| l.trim().strip_prefix(NAMES_PREFIX))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

/// The details as phpIPAM will hold them (see [`limits`](super::limits)): the description
/// shortened to its column, the hostname and the MAC as given or a 400 naming them (they are
/// never cut).
pub(super) fn fit_details(details: &RecordDetails) -> IpamResult<RecordDetails> {
    if let Some(h) = &details.hostname {
        ADDRESS_HOSTNAME.check("hostname", h)?;
    }
    if let Some(m) = &details.mac {
        ADDRESS_MAC.check("mac", m.as_str())?;
    }
    if let Some(n) = names_note(&details.aliases) {
        ADDRESS_NOTE.check("aliases", &n)?;
    }
    Ok(RecordDetails {
        aliases: details.aliases.clone(),
        hostname: details.hostname.clone(),
        description: details
            .description
            .as_deref()
            .map(|d| ADDRESS_DESCRIPTION.shorten(d).into_owned()),
        mac: details.mac.clone(),
    })
}

impl PhpipamBackend {
    /// Every address record holding `address` (any subnet).
    pub(super) async fn search_address(
        &self,
        cx: &CallContext,
        address: IpAddr,
    ) -> IpamResult<Vec<Address>> {
        let reply = self
            .api
            .get(cx, &format!("addresses/search/{address}/"), &[])
            .await?;
        match reply.status {
            200 => Ok(list(reply.env.data)
                .into_iter()
                .filter_map(|v| Address::from_value(v).ok())
                .collect()),
            404 => Ok(Vec::new()),
            _ => Err(self.upstream(&reply)),
        }
    }

    pub(super) async fn record_in(
        &self,
        cx: &CallContext,
        network: &str,
        address: IpAddr,
    ) -> IpamResult<Option<Address>> {
        let id = parse_id("network", network)?;
        Ok(self
            .search_address(cx, address)
            .await?
            .into_iter()
            .find(|a| a.subnet_id == Some(id) && a.addr() == Some(address)))
    }

    /// An address record's body. `details` are already fitted ([`fit_details`]); the owner is
    /// never cut (it is the lookup key): one that cannot fit phpIPAM's `owner` column is a 400.
    pub(super) fn record_body(
        &self,
        owner: &Owner,
        details: &RecordDetails,
    ) -> IpamResult<Map<String, Value>> {
        if self.cfg.owner_field == "owner" && !ADDRESS_OWNER.fits(owner.as_str()) {
            return Err(IpamError::invalid(
                "owner",
                format!(
                    "phpIPAM's owner field holds at most {} characters (this one has {}); \
                     configure owner_field = \"custom_…\" for longer owners",
                    ADDRESS_OWNER.max(),
                    ADDRESS_OWNER.measure(owner.as_str())
                ),
            ));
        }
        let mut body = Map::new();
        body.insert(self.cfg.owner_field.clone(), json!(owner.as_str()));
        if let Some(h) = &details.hostname {
            body.insert("hostname".into(), json!(h));
        }
        let description = match &details.description {
            Some(d) => d.clone(),
            None => ADDRESS_DESCRIPTION
                .shorten(&default_description(owner))
                .into_owned(),
        };
        body.insert("description".into(), json!(description));
        if let Some(m) = &details.mac {
            body.insert("mac".into(), json!(m.as_str()));
        }
        if let Some(n) = names_note(&details.aliases) {
            body.insert("note".into(), json!(n));
        }
        Ok(body)
    }

    /// Marks an IPv6 subnet-router anycast address that phpIPAM handed out as reserved.
    pub(super) async fn reserve_anycast(&self, cx: &CallContext, id: u64) -> IpamResult<()> {
        let body = json!({
            self.cfg.owner_field.clone(): "",
            "hostname": "",
            "description": ADDRESS_DESCRIPTION.shorten(ANYCAST_DESCRIPTION),
        });
        let reply = self
            .api
            .send(
                cx,
                Method::PATCH,
                &format!("addresses/{id}/"),
                &[],
                Some(&body),
            )
            .await?;
        if reply.ok() {
            Ok(())
        } else {
            Err(self.upstream(&reply))
        }
    }

    pub(super) async fn allocate_next(
        &self,
        cx: &CallContext,
        subnet: &Subnet,
        cidr: IpNet,
        body: &Value,
    ) -> IpamResult<(u64, IpAddr)> {
        let path = format!("addresses/first_free/{}/", subnet.id);
        for _ in 0..RACE_RETRIES {
            let reply = self
                .api
                .send(cx, Method::POST, &path, &[], Some(body))
                .await?;
            match reply.status {
                201 | 200 => {
                    let id = reply
                        .env
                        .id
                        .ok_or_else(|| self.bad_data("first_free answer", "no address id"))?;
                    let ip: IpAddr = reply
                        .env
                        .data
                        .as_ref()
                        .and_then(value_text)
                        .and_then(|t| t.trim().parse().ok())
                        .ok_or_else(|| self.bad_data("first_free answer", "no address"))?;
                    if matches!(cidr, IpNet::V6(_))
                        && !subnet.is_pool
                        && ip == cidr.network()
                        && cidr.prefix_len() < 127
                    {
                        tracing::info!(backend = %self.name, subnet = %cidr,
                            "reserving the IPv6 subnet-router anycast address phpIPAM handed out");
                        self.reserve_anycast(cx, id).await?;
                        continue;
                    }
                    return Ok((id, ip));
                }
                404 if reply.says("no free address") => {
                    return Err(IpamError::Exhausted(format!(
                        "phpIPAM subnet {} ({cidr}) has no free address",
                        subnet.id
                    )));
                }
                400 | 404 if reply.says("subnet") => {
                    return Err(IpamError::NotFound(format!(
                        "phpIPAM subnet {}: {}",
                        subnet.id,
                        reply.message()
                    )));
                }
                409 if reply.says("contains subnets") => {
                    return Err(IpamError::Conflict(format!(
                        "phpIPAM subnet {} ({cidr}) contains subnets; allocate in one of them",
                        subnet.id
                    )));
                }
                // Another writer took the same address between phpIPAM's lookup and insert.
                409 => continue,
                500 if reply.says("duplicate") => continue,
                _ => return Err(self.upstream(&reply)),
            }
        }
        Err(IpamError::Conflict(format!(
            "phpIPAM subnet {} ({cidr}): lost {RACE_RETRIES} races for the next free address; retry",
            subnet.id
        )))
    }

    pub(super) async fn allocate_specific(
        &self,
        cx: &CallContext,
        subnet: &Subnet,
        cidr: IpNet,
        address: IpAddr,
        mut body: Map<String, Value>,
    ) -> IpamResult<u64> {
        check_specific(address, &cidr, range_of(&cidr, subnet.is_pool))?;
        body.insert("ip".into(), json!(address.to_string()));
        body.insert("subnetId".into(), json!(subnet.id.to_string()));
        let reply = self
            .api
            .send(
                cx,
                Method::POST,
                "addresses/",
                &[],
                Some(&Value::Object(body)),
            )
            .await?;
        match reply.status {
            201 | 200 => reply
                .env
                .id
                .ok_or_else(|| self.bad_data("create answer", "no address id")),
            409 => Err(IpamError::Conflict(format!(
                "{address} in {cidr} is already allocated"
            ))),
            500 if reply.says("is not a valid address") => Err(IpamError::invalid(
                "address",
                format!("phpIPAM: {}", reply.message()),
            )),
            400 if reply.says("mac") => Err(IpamError::invalid("mac", reply.message())),
            404 | 400 if reply.says("subnet") => Err(IpamError::NotFound(format!(
                "phpIPAM subnet {}: {}",
                subnet.id,
                reply.message()
            ))),
            _ => Err(self.upstream(&reply)),
        }
    }

    pub(super) async fn allocate_address(
        &self,
        cx: &CallContext,
        req: &AllocateIn,
    ) -> IpamResult<AllocationInfo> {
        let subnet = self.exposed_network(cx, &req.network).await?;
        let cidr = subnet
            .cidr()
            .ok_or_else(|| IpamError::NotFound(format!("network {}", req.network)))?;
        let mut details = fit_details(&req.details)?;
        let body = self.record_body(&req.owner, &details)?;
        // Answered as written: without a description the body carries the default one.
        details.description = body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (id, address) = match req.address {
            Some(a) => (self.allocate_specific(cx, &subnet, cidr, a, body).await?, a),
            None => {
                self.allocate_next(cx, &subnet, cidr, &Value::Object(body))
                    .await?
            }
        };
        Ok(AllocationInfo {
            network: subnet.id.to_string(),
            address,
            owner: Some(req.owner.clone()),
            details,
            reference: Some(id.to_string()),
        })
    }

    pub(super) async fn find_addresses(
        &self,
        cx: &CallContext,
        lookup: &Lookup,
    ) -> IpamResult<Vec<AllocationInfo>> {
        let records = match lookup {
            Lookup::Owner(owner) => {
                let reply = self
                    .api
                    .get(
                        cx,
                        "addresses/",
                        &[
                            ("filter_by", self.cfg.owner_field.as_str()),
                            ("filter_value", owner.as_str()),
                        ],
                    )
                    .await?;
                let found: Vec<Address> = match reply.status {
                    200 => list(reply.env.data)
                        .into_iter()
                        .filter_map(|v| Address::from_value(v).ok())
                        .collect(),
                    // 404 "No results (filter applied)"; 400 "Invalid filter_by" when the
                    // first record has no such field (a custom owner field that does not exist).
                    404 => Vec::new(),
                    400 if reply.says("filter_by") => Vec::new(),
                    // An IPAM without any address: `Addresses.php` `GET()` finds none to read
                    // (`fetch_all_objects` is false for an empty table) and says so with a 500.
                    500 if reply.says("unable to read addresses") => Vec::new(),
                    _ => return Err(self.upstream(&reply)),
                };
                // phpIPAM compares loosely (PHP `!=`); keep exact matches only.
                found
                    .into_iter()
                    .filter(|a| {
                        a.text_field(&self.cfg.owner_field).as_deref() == Some(owner.as_str())
                    })
                    .collect::<Vec<_>>()
            }
            Lookup::Address { address, network } => {
                let wanted = network
                    .as_deref()
                    .map(|n| parse_id("network", n))
                    .transpose()?;
                self.search_address(cx, *address)
                    .await?
                    .into_iter()
                    .filter(|a| wanted.is_none() || a.subnet_id == wanted)
                    .collect()
            }
        };
        let inv = self.cached_inventory(cx).await?;
        Ok(records
            .iter()
            .filter(|a| a.subnet_id.is_some_and(|s| inv.network(s).is_some()))
            .filter_map(|a| self.allocation(a))
            .collect())
    }

    /// `GET subnets/{id}/addresses/?filter_by=<owner_field>&filter_value=<owner>`: phpIPAM reads
    /// the rows of that one subnet (`fetch_subnet_addresses`) and filters them in PHP, so the
    /// lookup costs what the candidate subnet holds, not what the IPAM holds (the filtered
    /// `GET addresses/` of [`Backend::find`](crate::backends::Backend::find) reads every
    /// address). The filter keeps the answer small; phpIPAM compares loosely (PHP `!=`), so
    /// exact matches are kept here.
    pub(super) async fn owner_in_subnet(
        &self,
        cx: &CallContext,
        owner: &Owner,
        network: &str,
    ) -> IpamResult<Vec<AllocationInfo>> {
        let subnet = self.exposed_network(cx, network).await?;
        let reply = self
            .api
            .get(
                cx,
                &format!("subnets/{}/addresses/", subnet.id),
                &[
                    ("filter_by", self.cfg.owner_field.as_str()),
                    ("filter_value", owner.as_str()),
                ],
            )
            .await?;
        let found: Vec<Address> = match reply.status {
            200 => list(reply.env.data)
                .into_iter()
                .filter_map(|v| Address::from_value(v).ok())
                .collect(),
            // 404 "No addresses found" (fixture 87: the subnet holds none, checked before the
            // filter), 404 "No results (filter applied)".
            404 if reply.says("no addresses") || reply.says("no results") => Vec::new(),
            // "Invalid subnet Id (N)" (fixture 89's wording on a sub-resource): deleted in
            // phpIPAM since the inventory was read.
            400 | 404 if reply.says("subnet") => {
                self.inventory.invalidate(&self.api.scope(cx)).await;
                return Err(IpamError::NotFound(format!(
                    "network {network}: phpIPAM says {}",
                    reply.message()
                )));
            }
            // "Invalid filter_by": the subnet's first record has no such field (a custom owner
            // field that does not exist); nothing can carry the marker then.
            400 if reply.says("filter_by") => Vec::new(),
            _ => return Err(self.upstream(&reply)),
        };
        Ok(found
            .iter()
            .filter(|a| a.subnet_id == Some(subnet.id))
            .filter(|a| a.text_field(&self.cfg.owner_field).as_deref() == Some(owner.as_str()))
            .filter_map(|a| self.allocation(a))
            .collect())
    }

    pub(super) async fn release_address(
        &self,
        cx: &CallContext,
        network: &str,
        address: IpAddr,
    ) -> IpamResult<()> {
        self.exposed_network(cx, network).await?;
        let Some(record) = self.record_in(cx, network, address).await? else {
            return Ok(());
        };
        if record.is_gateway {
            return Err(IpamError::Conflict(format!(
                "{address} is the gateway of network {network}; it is not released"
            )));
        }
        let reply = self
            .api
            .send(
                cx,
                Method::DELETE,
                &format!("addresses/{}/", record.id),
                &[],
                None,
            )
            .await?;
        match reply.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.upstream(&reply)),
        }
    }

    pub(super) async fn update_address(
        &self,
        cx: &CallContext,
        network: &str,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<AllocationInfo> {
        // What phpIPAM will hold, checked before anything is looked up.
        let fitted = fit_details(&RecordDetails {
            aliases: changes.aliases.clone().unwrap_or_default(),
            hostname: changes.hostname.clone(),
            description: changes.description.clone(),
            mac: changes.mac.clone(),
        })?;
        self.exposed_network(cx, network).await?;
        let record = self
            .record_in(cx, network, address)
            .await?
            .ok_or_else(|| not_allocated(address, network))?;
        let mut current = self
            .allocation(&record)
            .ok_or_else(|| self.bad_data("address record", format!("address id {}", record.id)))?;
        let mut body = Map::new();
        if let Some(h) = fitted.hostname {
            body.insert("hostname".into(), json!(h));
            current.details.hostname = Some(h);
        }
        if let Some(d) = fitted.description {
            body.insert("description".into(), json!(d));
            current.details.description = Some(d);
        }
        if let Some(m) = fitted.mac {
            body.insert("mac".into(), json!(m.as_str()));
            current.details.mac = Some(m);
        }
        if let Some(names) = &changes.aliases {
            let note = renoted(record.text_field("note").as_deref(), names);
            ADDRESS_NOTE.check("aliases", &note)?;
            body.insert("note".into(), json!(note));
            current.details.aliases = names.clone();
        }
        if body.is_empty() {
            return Ok(current);
        }
        let reply = self
            .api
            .send(
                cx,
                Method::PATCH,
                &format!("addresses/{}/", record.id),
                &[],
                Some(&Value::Object(body)),
            )
            .await?;
        match reply.status {
            200 | 204 => Ok(current),
            404 => Err(not_allocated(address, network)),
            400 if reply.says("mac") => Err(IpamError::invalid("mac", reply.message())),
            _ => Err(self.upstream(&reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn the_names_line_of_a_note_is_read_back_and_other_text_is_not_a_name() {
        let aliases = names(&["b.lab.example.com", "c.lab.example.com"]);
        let note = names_note(&aliases);
        assert_eq!(
            note.as_deref(),
            Some("ipamgw-names: b.lab.example.com c.lab.example.com")
        );
        assert_eq!(noted_names(note.as_deref()), aliases);
        assert_eq!(names_note(&[]), None);
        assert!(noted_names(None).is_empty());
        assert!(noted_names(Some("rack 12, owner: team-a")).is_empty());
    }

    #[test]
    fn a_new_names_line_replaces_the_old_one_and_keeps_the_other_lines() {
        let old = "rack 12\nipamgw-names: b.lab.example.com\nticket 7";
        let new = renoted(Some(old), &names(&["c.lab.example.com"]));
        assert_eq!(new, "rack 12\nticket 7\nipamgw-names: c.lab.example.com");
        assert_eq!(noted_names(Some(&new)), names(&["c.lab.example.com"]));
        assert_eq!(renoted(Some(old), &[]), "rack 12\nticket 7");
        assert_eq!(renoted(None, &[]), "");
    }

    /// `note` is `text`, 65,535 bytes: names that would not fit are a 400 naming them, before
    /// anything is written (no DNS name is cut).
    #[test]
    fn names_beyond_the_note_column_are_a_400_naming_aliases() {
        let long = format!("{}.example.com", "a".repeat(60));
        let aliases = vec![long; 1_000];
        let err = fit_details(&RecordDetails {
            aliases,
            ..RecordDetails::default()
        })
        .expect_err("too long");
        match err {
            IpamError::InvalidInput { field, why } => {
                assert_eq!(field, "aliases");
                assert!(why.contains("note"), "{why}");
            }
            other => panic!("not a 400: {other:?}"),
        }
        let fits = fit_details(&RecordDetails {
            aliases: names(&["b.lab.example.com"]),
            ..RecordDetails::default()
        })
        .expect("fits");
        assert_eq!(fits.aliases, names(&["b.lab.example.com"]));
    }
}
