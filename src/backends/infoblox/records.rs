//! Allocate, find, update and release the gateway's records (`record:host`, `fixedaddress` /
//! `ipv6fixedaddress`, or `record:a` / `record:aaaa` + `record:ptr`, per `record_style`): the
//! searches that find them, the bodies that write them, and the answers read back.

use std::collections::HashMap;
use std::net::IpAddr;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::Reply;
use super::config::{OwnerMarker, RecordStyle};
use super::inventory::Net;
use super::names::{duid_from_mac, regex_escape, unique_name};
use super::wire::{self, IpAddressEntry, Record};
use super::{
    A_FIELDS, AAAA_FIELDS, ADDRESS_FIELDS, FIXED4_FIELDS, FIXED6_FIELDS, HOST_FIELDS,
    InfobloxBackend, NO_MAC, PTR_FIELDS, q,
};
use crate::backends::CallContext;
use crate::backends::common::{check_specific, not_allocated, owner_marker};
use crate::domain::{
    AllocateIn, AllocationInfo, Family, IpamError, IpamResult, Lookup, Mac, RecordChanges,
    RecordDetails,
};
use crate::ipmath::usable_range;

impl InfobloxBackend {
    /// The object types the record style creates, with the fields the gateway reads.
    pub(super) fn record_types(&self) -> &'static [(&'static str, &'static str)] {
        match self.cfg.record_style {
            RecordStyle::Host => &[("record:host", HOST_FIELDS)],
            RecordStyle::FixedAddress => &[
                ("fixedaddress", FIXED4_FIELDS),
                ("ipv6fixedaddress", FIXED6_FIELDS),
            ],
            RecordStyle::APtr => &[("record:a", A_FIELDS), ("record:aaaa", AAAA_FIELDS)],
        }
    }

    pub(super) fn fields_of(object: &str) -> &'static str {
        match object {
            "record:host" => HOST_FIELDS,
            "fixedaddress" => FIXED4_FIELDS,
            "ipv6fixedaddress" => FIXED6_FIELDS,
            "record:a" => A_FIELDS,
            "record:aaaa" => AAAA_FIELDS,
            "record:ptr" => PTR_FIELDS,
            _ => "comment",
        }
    }

    /// The record-style object and its address field for a family.
    pub(super) fn object_for(&self, family: Family) -> (&'static str, &'static str) {
        match (self.cfg.record_style, family) {
            (RecordStyle::Host, _) => ("record:host", HOST_FIELDS),
            (RecordStyle::FixedAddress, Family::V4) => ("fixedaddress", FIXED4_FIELDS),
            (RecordStyle::FixedAddress, Family::V6) => ("ipv6fixedaddress", FIXED6_FIELDS),
            (RecordStyle::APtr, Family::V4) => ("record:a", A_FIELDS),
            (RecordStyle::APtr, Family::V6) => ("record:aaaa", AAAA_FIELDS),
        }
    }

    pub(super) fn parse_records(&self, values: Vec<Value>) -> Vec<Record> {
        values
            .into_iter()
            .filter_map(|v| match wire::parse::<Record>("record", v) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(backend = %self.name, error = %e,
                        "skipping an Infoblox record that cannot be read");
                    None
                }
            })
            .collect()
    }

    /// The search filters that find an address of `object` in `net`.
    pub(super) fn address_filters(
        &self,
        object: &str,
        net: &Net,
        addr: IpAddr,
    ) -> Vec<(String, String)> {
        let field = if addr.is_ipv4() {
            "ipv4addr"
        } else {
            "ipv6addr"
        };
        let mut f = vec![q(field, addr.to_string())];
        match object {
            "record:a" | "record:aaaa" | "record:ptr" => {
                f.push(q("view", self.cfg.dns_view.as_str()))
            }
            _ => f.push(q("network_view", net.view.as_str())),
        }
        f
    }

    /// The gateway's records holding `addr` in `net`.
    pub(super) async fn records_at(
        &self,
        cx: &CallContext,
        net: &Net,
        addr: IpAddr,
    ) -> IpamResult<Vec<Record>> {
        let (object, fields) = self.object_for(Family::of_addr(&addr));
        let found = self
            .api
            .get_all(cx, object, &self.address_filters(object, net, addr), fields)
            .await?;
        Ok(self
            .parse_records(found)
            .into_iter()
            .filter(|r| r.addresses().contains(&addr))
            .collect())
    }

    /// Is anything at all using `addr` in `net` (`ipv4address` / `ipv6address` status)?
    pub(super) async fn address_used(
        &self,
        cx: &CallContext,
        net: &Net,
        addr: IpAddr,
    ) -> IpamResult<bool> {
        let object = if addr.is_ipv4() {
            "ipv4address"
        } else {
            "ipv6address"
        };
        let reply = self
            .api
            .get(
                cx,
                object,
                &[
                    q("ip_address", addr.to_string()),
                    q("network_view", net.view.as_str()),
                    q("_return_fields", ADDRESS_FIELDS),
                ],
            )
            .await?;
        if !reply.ok() {
            return Err(self.error(&reply, &format!("search {object} {addr}")));
        }
        let entries: Vec<IpAddressEntry> = serde_json::from_value(reply.body).unwrap_or_default();
        Ok(entries
            .iter()
            .any(|e| e.addr() == Some(addr) && e.is_held()))
    }

    /// A created (or updated) object from a `201`/`200`: the object itself when the grid
    /// honoured `_return_fields`, else read back by its ref.
    pub(super) async fn object_reply(
        &self,
        cx: &CallContext,
        reply: Reply,
        fields: &str,
        context: &str,
    ) -> IpamResult<Record> {
        if !reply.ok() {
            return Err(self.create_error(&reply, context));
        }
        match reply.body {
            Value::Object(_) => serde_json::from_value(reply.body)
                .map_err(|e| self.bad_data(&format!("answer to {context}"), e)),
            Value::String(reference) => {
                let got = self
                    .api
                    .get(cx, &reference, &[q("_return_fields", fields)])
                    .await?;
                if !got.ok() {
                    return Err(self.error(&got, &format!("read {reference}")));
                }
                serde_json::from_value(got.body)
                    .map_err(|e| self.bad_data(&format!("answer to read {reference}"), e))
            }
            other => Err(self.bad_data(&format!("answer to {context}"), other)),
        }
    }

    pub(super) fn create_error(&self, reply: &Reply, context: &str) -> IpamError {
        if reply.says("parent was not found") {
            return IpamError::invalid(
                "hostname",
                format!(
                    "Infoblox, {context}: {} (no DNS zone holds the name)",
                    reply.detail()
                ),
            );
        }
        if reply.says("Unknown extensible attribute") {
            return IpamError::Upstream {
                backend: self.name.clone(),
                status: reply.status,
                detail: format!(
                    "{context}: {} (create the extensible attribute in the grid, see the README)",
                    reply.detail()
                ),
            };
        }
        self.error(reply, context)
    }

    pub(super) async fn post(
        &self,
        cx: &CallContext,
        object: &str,
        fields: &str,
        body: &Value,
    ) -> IpamResult<Reply> {
        self.api
            .send(
                cx,
                Method::POST,
                object,
                &[q("_return_fields", fields)],
                Some(body),
            )
            .await
    }

    pub(super) async fn delete_ref(&self, cx: &CallContext, reference: &str) -> IpamResult<()> {
        let reply = self
            .api
            .send(cx, Method::DELETE, reference, &[], None)
            .await?;
        match reply.status {
            200..=299 | 404 => Ok(()),
            _ if reply.says("Data.NotFound") => Ok(()),
            _ => Err(self.error(&reply, &format!("delete {reference}"))),
        }
    }

    pub(super) async fn create_record(
        &self,
        cx: &CallContext,
        net: &Net,
        req: &AllocateIn,
        target: Value,
    ) -> IpamResult<(Record, Option<String>)> {
        let family = Family::of(&net.cidr);
        let v4 = family == Family::V4;
        let (object, fields) = self.object_for(family);
        let comment = self.comment(&req.owner, req.details.description.as_deref());
        let extattrs = self.owner_eas(&req.owner, Map::new());
        let context = format!("create {object} in {} (view {})", net.cidr, net.view);
        let mac = req.details.mac.as_ref();
        match self.cfg.record_style {
            RecordStyle::Host => {
                let name = self.record_name(net, &req.owner, req.details.hostname.as_deref())?;
                let mut entry = Map::new();
                entry.insert(
                    (if v4 { "ipv4addr" } else { "ipv6addr" }).into(),
                    json!(target),
                );
                match mac {
                    Some(m) if v4 => {
                        entry.insert("mac".into(), json!(m.as_str()));
                        entry.insert(
                            "configure_for_dhcp".into(),
                            json!(self.cfg.configure_for_dhcp),
                        );
                    }
                    _ => {
                        entry.insert("configure_for_dhcp".into(), json!(false));
                    }
                }
                let mut body = json!({
                    "name": name,
                    "configure_for_dns": self.cfg.configure_for_dns,
                    "network_view": net.view,
                    "comment": comment,
                    "extattrs": extattrs,
                });
                body[if v4 { "ipv4addrs" } else { "ipv6addrs" }] = json!([Value::Object(entry)]);
                if self.cfg.configure_for_dns {
                    body["view"] = json!(self.cfg.dns_view);
                }
                let mut reply = self.post(cx, object, fields, &body).await?;
                if !reply.ok() && reply.says("already exists") {
                    // Host names are unique per view, but one machine holds several addresses
                    // (one owner each: `vra:<id>/nic0`, `…/nic1`; or one owner in two networks:
                    // dual stack): the next one is named `<name>-<hash of owner and network>`.
                    let unique = unique_name(&name, &req.owner, &net.id);
                    tracing::debug!(backend = %self.name, taken = %name, name = %unique,
                        "host name taken by another record; using an owner-specific one");
                    body["name"] = json!(unique);
                    reply = self.post(cx, object, fields, &body).await?;
                }
                Ok((self.object_reply(cx, reply, fields, &context).await?, None))
            }
            RecordStyle::FixedAddress => {
                let mut body = json!({
                    "network_view": net.view,
                    "comment": comment,
                    "extattrs": extattrs,
                });
                if let Some(h) = req
                    .details
                    .hostname
                    .as_deref()
                    .filter(|h| !h.trim().is_empty())
                {
                    body["name"] = json!(h.trim());
                }
                if v4 {
                    body["ipv4addr"] = json!(target);
                    body["mac"] = json!(mac.map(Mac::as_str).unwrap_or(NO_MAC));
                } else {
                    body["ipv6addr"] = json!(target);
                    body["duid"] = json!(
                        mac.map(duid_from_mac)
                            .unwrap_or_else(|| "00:00:00:00:00:00:00:00".to_owned())
                    );
                }
                let reply = self.post(cx, object, fields, &body).await?;
                Ok((self.object_reply(cx, reply, fields, &context).await?, None))
            }
            RecordStyle::APtr => {
                let name = self.record_name(net, &req.owner, req.details.hostname.as_deref())?;
                let addr_field = if v4 { "ipv4addr" } else { "ipv6addr" };
                let mut body = json!({
                    "name": name,
                    "view": self.cfg.dns_view,
                    "comment": comment,
                    "extattrs": extattrs,
                });
                body[addr_field] = json!(target);
                let reply = self.post(cx, object, fields, &body).await?;
                let rec = self.object_reply(cx, reply, fields, &context).await?;
                let Some(addr) = rec.addresses().into_iter().next() else {
                    let _ = self.delete_ref(cx, &rec.reference).await;
                    return Err(self.bad_data(&context, "the record holds no address"));
                };
                let mut ptr = json!({
                    "ptrdname": name,
                    "view": self.cfg.dns_view,
                    "comment": comment,
                    "extattrs": extattrs,
                });
                ptr[addr_field] = json!(addr.to_string());
                let created = self.post(cx, "record:ptr", PTR_FIELDS, &ptr).await;
                let failure = match created {
                    Ok(r) if r.ok() => None,
                    Ok(r) => Some(self.create_error(&r, &format!("create record:ptr for {addr}"))),
                    Err(e) => Some(e),
                };
                if let Some(e) = failure {
                    if let Err(undo) = self.delete_ref(cx, &rec.reference).await {
                        tracing::error!(backend = %self.name, error = %undo,
                            "could not delete an A record after its PTR failed");
                    }
                    return Err(e);
                }
                Ok((rec, Some(name)))
            }
        }
    }

    /// Host addresses of a record as they go back in a `PUT` (read-only fields dropped).
    pub(super) fn host_entries(
        rec: &Record,
        v4: bool,
        keep: impl Fn(&wire::HostAddress) -> bool,
        mac_for: Option<(IpAddr, &Mac, bool)>,
    ) -> Vec<Value> {
        let list = if v4 { &rec.ipv4addrs } else { &rec.ipv6addrs };
        list.iter()
            .filter(|h| keep(h))
            .filter_map(|h| {
                let addr = h.addr()?;
                let mut e = Map::new();
                e.insert(
                    (if v4 { "ipv4addr" } else { "ipv6addr" }).into(),
                    json!(addr.to_string()),
                );
                let mut mac = h.mac.clone();
                let mut dhcp = h.configure_for_dhcp;
                if let Some((at, m, on)) = mac_for
                    && at == addr
                {
                    mac = Some(m.as_str().to_owned());
                    dhcp = Some(on);
                }
                if let Some(m) = mac.filter(|_| v4) {
                    e.insert("mac".into(), json!(m));
                }
                if let Some(d) = h.duid.clone().filter(|_| !v4) {
                    e.insert("duid".into(), json!(d));
                }
                if let Some(d) = dhcp {
                    e.insert("configure_for_dhcp".into(), json!(d));
                }
                Some(Value::Object(e))
            })
            .collect()
    }

    pub(super) async fn put(
        &self,
        cx: &CallContext,
        reference: &str,
        fields: &str,
        body: &Value,
    ) -> IpamResult<Reply> {
        self.api
            .send(
                cx,
                Method::PUT,
                reference,
                &[q("_return_fields", fields)],
                Some(body),
            )
            .await
    }

    /// Deletes the PTR records of `addr` in the DNS view (A + PTR style); only those with an
    /// owner marker when `owned_only`.
    pub(super) async fn delete_ptrs(
        &self,
        cx: &CallContext,
        net: &Net,
        addr: IpAddr,
        owned_only: bool,
    ) -> IpamResult<()> {
        let found = self
            .api
            .get_all(
                cx,
                "record:ptr",
                &self.address_filters("record:ptr", net, addr),
                PTR_FIELDS,
            )
            .await?;
        for p in self.parse_records(found) {
            if owned_only && self.owner_of(&p.extattrs, p.comment.as_deref()).is_none() {
                continue;
            }
            self.delete_ref(cx, &p.reference).await?;
        }
        Ok(())
    }

    pub(super) async fn allocate_record(
        &self,
        cx: &CallContext,
        req: &AllocateIn,
    ) -> IpamResult<AllocationInfo> {
        let net = self.exposed_network(cx, &req.network).await?;
        let target = match req.address {
            Some(a) => {
                check_specific(a, &net.cidr, usable_range(&net.cidr))?;
                // Checked here, not by the grid: a router named only by the `routers` option
                // (or `gateway_ea`) is held by no object, so the grid would accept it.
                if net.is_router(a) {
                    return Err(IpamError::invalid(
                        "address",
                        format!(
                            "{a} is the gateway (router) of network {} (view {}); it is never \
                             handed out",
                            net.cidr, net.view
                        ),
                    ));
                }
                if self.address_used(cx, &net, a).await? {
                    return Err(IpamError::Conflict(format!(
                        "{a} in {} (view {}) is already in use",
                        net.cidr, net.view
                    )));
                }
                json!(a.to_string())
            }
            None => net.next_available_ip(),
        };
        let (rec, _) = self.create_record(cx, &net, req, target).await?;
        let family = Family::of(&net.cidr);
        let address = match req.address {
            Some(a) => a,
            None => rec
                .addresses()
                .into_iter()
                .find(|a| Family::of_addr(a) == family && net.cidr.contains(a))
                .ok_or_else(|| self.bad_data("create answer", "no address in the network"))?,
        };
        let inv = self.cached_inventory(cx).await?;
        let mut info = self
            .allocation(&inv, &rec, address)
            .unwrap_or(AllocationInfo {
                network: net.id.clone(),
                address,
                owner: None,
                details: RecordDetails::default(),
                reference: Some(rec.reference.clone()),
            });
        info.network = net.id.clone();
        info.owner = Some(req.owner.clone());
        if info.details.mac.is_none() {
            info.details.mac = req
                .details
                .mac
                .clone()
                .filter(|_| self.cfg.record_style != RecordStyle::APtr && family == Family::V4);
        }
        Ok(info)
    }

    pub(super) async fn find_records(
        &self,
        cx: &CallContext,
        lookup: &Lookup,
    ) -> IpamResult<Vec<AllocationInfo>> {
        let inv = self.cached_inventory(cx).await?;
        let mut out = Vec::new();
        match lookup {
            Lookup::Owner(owner) => {
                let filter = match self.cfg.owner_marker {
                    OwnerMarker::Ea => q(&format!("*{}", self.cfg.owner_ea), owner.as_str()),
                    OwnerMarker::Comment => q(
                        "comment~",
                        format!("{}$", regex_escape(&owner_marker(owner))),
                    ),
                };
                for (object, fields) in self.record_types() {
                    let found = self
                        .api
                        .get_all(cx, object, std::slice::from_ref(&filter), fields)
                        .await?;
                    for rec in self.parse_records(found) {
                        if self
                            .owner_of(&rec.extattrs, rec.comment.as_deref())
                            .as_ref()
                            != Some(owner)
                        {
                            continue;
                        }
                        for addr in rec.addresses() {
                            out.extend(self.allocation(&inv, &rec, addr));
                        }
                    }
                }
            }
            Lookup::Address { address, network } => {
                let nets: Vec<Net> = match network {
                    Some(id) => match inv.network(id) {
                        Some(n) => vec![n.clone()],
                        None => return Ok(Vec::new()),
                    },
                    None => {
                        let mut by_view: HashMap<&str, &Net> = HashMap::new();
                        for n in inv.networks.iter().filter(|n| n.cidr.contains(address)) {
                            by_view.entry(n.view.as_str()).or_insert(n);
                        }
                        by_view.into_values().cloned().collect()
                    }
                };
                for net in &nets {
                    for rec in self.records_at(cx, net, *address).await? {
                        if let Some(mut a) = self.allocation(&inv, &rec, *address) {
                            a.network = net.id.clone();
                            out.push(a);
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.network, a.address).cmp(&(&b.network, b.address)));
        out.dedup_by(|a, b| a.network == b.network && a.address == b.address);
        Ok(out)
    }

    pub(super) async fn release_record(
        &self,
        cx: &CallContext,
        network: &str,
        address: IpAddr,
    ) -> IpamResult<()> {
        let net = self.exposed_network(cx, network).await?;
        let v4 = address.is_ipv4();
        let mut records = self.records_at(cx, &net, address).await?;
        // A router address: only what the gateway made (an allocation an older version handed
        // out) is released; a reservation or an operator's record of the router is left alone.
        let router = net.is_router(address);
        if router {
            let held = records.len();
            records.retain(|r| self.owner_of(&r.extattrs, r.comment.as_deref()).is_some());
            if records.is_empty() && held > 0 {
                return Err(IpamError::Conflict(format!(
                    "{address} is the gateway of network {network}; the record holding it was \
                     not made by ipam-gateway and is not released"
                )));
            }
        }
        for rec in records {
            if rec.object_type() == "record:host" && rec.addresses().len() > 1 {
                let entries = Self::host_entries(&rec, v4, |h| h.addr() != Some(address), None);
                let mut body = Map::new();
                body.insert(
                    (if v4 { "ipv4addrs" } else { "ipv6addrs" }).into(),
                    Value::Array(entries),
                );
                let reply = self
                    .put(cx, &rec.reference, HOST_FIELDS, &Value::Object(body))
                    .await?;
                if !reply.ok() && reply.status != 404 {
                    return Err(self.error(&reply, &format!("update {}", rec.reference)));
                }
            } else {
                self.delete_ref(cx, &rec.reference).await?;
            }
        }
        if self.cfg.record_style == RecordStyle::APtr {
            self.delete_ptrs(cx, &net, address, router).await?;
        }
        Ok(())
    }

    pub(super) async fn update_record(
        &self,
        cx: &CallContext,
        network: &str,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<AllocationInfo> {
        let net = self.exposed_network(cx, network).await?;
        let mut records = self.records_at(cx, &net, address).await?;
        // A router address: only an allocation the gateway made is changed, never the router's
        // reservation or an operator's record (as in `release`).
        if net.is_router(address) {
            let held = records.len();
            records.retain(|r| self.owner_of(&r.extattrs, r.comment.as_deref()).is_some());
            if records.is_empty() && held > 0 {
                return Err(IpamError::Conflict(format!(
                    "{address} is the gateway of network {network}; the record holding it was \
                     not made by ipam-gateway and is not changed"
                )));
            }
        }
        let rec = records
            .into_iter()
            .next()
            .ok_or_else(|| not_allocated(address, network))?;
        let v4 = address.is_ipv4();
        let owner = self.owner_of(&rec.extattrs, rec.comment.as_deref());
        let mut body = Map::new();
        let mut new_name = None;
        // `changes.aliases` is not kept: Infoblox records register DNS themselves (see
        // `mapping.rs`, where they read back as none).
        if let Some(h) = changes.hostname.as_deref().filter(|h| !h.trim().is_empty()) {
            let name = match &owner {
                Some(o) if self.cfg.record_style != RecordStyle::FixedAddress => {
                    self.record_name(&net, o, Some(h))?
                }
                _ => h.trim().to_owned(),
            };
            body.insert("name".into(), json!(name));
            new_name = Some(name);
        }
        if let Some(d) = &changes.description {
            let comment = match (&owner, self.cfg.owner_marker) {
                (Some(o), OwnerMarker::Comment) => self.comment(o, Some(d)),
                _ => d.clone(),
            };
            body.insert("comment".into(), json!(comment));
        }
        if let Some(m) = &changes.mac {
            match (self.cfg.record_style, v4) {
                (RecordStyle::APtr, _) => {
                    return Err(IpamError::Unsupported(format!(
                        "backend {} keeps A and PTR records (record_style = \"a_ptr\"): \
                         they hold no MAC address",
                        self.name
                    )));
                }
                (_, false) => {
                    return Err(IpamError::invalid(
                        "mac",
                        "Infoblox matches IPv6 host and fixed addresses by DUID, not by MAC; \
                         no MAC is kept for an IPv6 address",
                    ));
                }
                (RecordStyle::Host, true) => {
                    let on = self.cfg.configure_for_dhcp;
                    body.insert(
                        "ipv4addrs".into(),
                        Value::Array(Self::host_entries(
                            &rec,
                            true,
                            |_| true,
                            Some((address, m, on)),
                        )),
                    );
                }
                (RecordStyle::FixedAddress, true) => {
                    body.insert("mac".into(), json!(m.as_str()));
                }
            }
        }
        let inv = self.cached_inventory(cx).await?;
        if body.is_empty() {
            return self
                .allocation(&inv, &rec, address)
                .ok_or_else(|| IpamError::NotFound(format!("{address} in network {network}")));
        }
        let fields = Self::fields_of(rec.object_type());
        let reply = self
            .put(cx, &rec.reference, fields, &Value::Object(body))
            .await?;
        let context = format!("update {}", rec.reference);
        if reply.status == 404 {
            return Err(not_allocated(address, network));
        }
        if !reply.ok() && reply.says("mac") {
            return Err(IpamError::invalid("mac", reply.detail()));
        }
        let updated = self.object_reply(cx, reply, fields, &context).await?;
        if let Some(name) = new_name
            && self.cfg.record_style == RecordStyle::APtr
        {
            let found = self
                .api
                .get_all(
                    cx,
                    "record:ptr",
                    &self.address_filters("record:ptr", &net, address),
                    PTR_FIELDS,
                )
                .await?;
            for p in self.parse_records(found) {
                let reply = self
                    .put(cx, &p.reference, PTR_FIELDS, &json!({"ptrdname": name}))
                    .await?;
                if !reply.ok() {
                    return Err(self.error(&reply, &format!("update {}", p.reference)));
                }
            }
        }
        let mut info = self
            .allocation(&inv, &updated, address)
            .ok_or_else(|| IpamError::NotFound(format!("{address} in network {network}")))?;
        info.network = net.id.clone();
        Ok(info)
    }
}
