//! WAPI JSON shapes, read leniently (fields absent unless asked for with `_return_fields`).
//!
//! Sources: `../shared/contracts/infoblox-wapi.md` §2 (refs, return shapes), §3 (paging),
//! §5 (objects) and §6 (`{Error, code, text}` bodies).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Field-naming reads, shared with the phpIPAM adapter.
pub use crate::backends::phpipam::wire::{WireError, parse};

/// A WAPI error body: `{"Error": "AdmConDataError: …", "code": "Client.Ibap.…", "text": "…"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WapiError {
    #[serde(rename = "Error", default)]
    pub error: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

/// One page of a paged search: `{"result": [...], "next_page_id": "…"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub result: Vec<Value>,
    #[serde(default)]
    pub next_page_id: Option<Value>,
}

impl Page {
    /// The cursor of the next page; `None` (or empty) on the last page.
    pub fn next(&self) -> Option<String> {
        match &self.next_page_id {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A DHCP option as networks carry it: `{"name": "routers", "num": 3, "value": "10.0.0.1",
/// "use_option": true, "vendor_class": "DHCP"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct DhcpOption {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub num: Option<u32>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_option: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_class: Option<String>,
}

/// `network`, `ipv6network`, `networkcontainer`, `ipv6networkcontainer`.
#[derive(Debug, Clone, Deserialize)]
pub struct Network {
    #[serde(rename = "_ref")]
    pub reference: String,
    pub network: String,
    #[serde(default)]
    pub network_view: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub extattrs: Map<String, Value>,
    #[serde(default)]
    pub options: Vec<DhcpOption>,
    /// The parent container's CIDR (`/` at the top).
    #[serde(default)]
    pub network_container: Option<String>,
    /// IPv6 networks: DNS domain and servers are fields, not DHCP options (INFERRED from the
    /// WAPI object reference; only asked for on `ipv6network`).
    #[serde(default)]
    pub domain_name: Option<String>,
    #[serde(default)]
    pub domain_name_servers: Vec<String>,
    /// `network` only: "the network utilization in percentage" (INFERRED from the WAPI object
    /// reference, not in the contract; only asked for with `free_counts = "utilization"`). Kept
    /// raw: whatever the grid sends is read leniently by [`Network::utilization_percent`].
    #[serde(default)]
    pub utilization: Option<Value>,
}

impl Network {
    /// The utilization in percent, clamped to 0..=100: a number or a numeric string (`"37"`,
    /// `"37.5"`, `"37%"`); absent, `null` or anything else = unknown.
    pub fn utilization_percent(&self) -> Option<u8> {
        let v = match self.utilization.as_ref()? {
            Value::Number(n) => n.as_f64()?,
            Value::String(s) => s.trim().trim_end_matches('%').trim().parse::<f64>().ok()?,
            _ => return None,
        };
        if !v.is_finite() {
            return None;
        }
        // Clamped, then truncated: 100.0 at most, so the cast cannot overflow.
        Some(v.clamp(0.0, 100.0) as u8)
    }

    pub fn cidr(&self) -> Option<IpNet> {
        self.network.trim().parse::<IpNet>().ok().map(|n| n.trunc())
    }

    /// An option's value, when it is in use (`use_option` absent counts as in use).
    pub fn option(&self, names: &[&str]) -> Option<&str> {
        self.options
            .iter()
            .find(|o| {
                o.name.as_deref().is_some_and(|n| names.contains(&n)) && o.use_option != Some(false)
            })
            .and_then(|o| o.value.as_deref())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

/// One address of a host record (`record:host_ipv4addr` / `record:host_ipv6addr`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostAddress {
    #[serde(rename = "_ref", default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub ipv4addr: Option<String>,
    #[serde(default)]
    pub ipv6addr: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub duid: Option<String>,
    #[serde(default)]
    pub configure_for_dhcp: Option<bool>,
}

impl HostAddress {
    pub fn addr(&self) -> Option<IpAddr> {
        self.ipv4addr
            .as_deref()
            .or(self.ipv6addr.as_deref())?
            .trim()
            .parse()
            .ok()
    }
}

/// Any address-holding object the gateway creates: `record:host`, `fixedaddress`,
/// `ipv6fixedaddress`, `record:a`, `record:aaaa`, `record:ptr`.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    #[serde(rename = "_ref")]
    pub reference: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub view: Option<String>,
    #[serde(default)]
    pub network_view: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub extattrs: Map<String, Value>,
    #[serde(default)]
    pub ipv4addrs: Vec<HostAddress>,
    #[serde(default)]
    pub ipv6addrs: Vec<HostAddress>,
    #[serde(default)]
    pub ipv4addr: Option<String>,
    #[serde(default)]
    pub ipv6addr: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub ptrdname: Option<String>,
}

impl Record {
    /// The object type: the ref up to the first `/` (`record:host`, `fixedaddress`, …).
    pub fn object_type(&self) -> &str {
        object_type(&self.reference)
    }

    /// Every address the object holds.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self
            .ipv4addrs
            .iter()
            .chain(self.ipv6addrs.iter())
            .filter_map(HostAddress::addr)
            .collect();
        for a in [&self.ipv4addr, &self.ipv6addr].into_iter().flatten() {
            if let Ok(ip) = a.trim().parse() {
                out.push(ip);
            }
        }
        out
    }

    /// The host address entry for `addr` (host records only).
    pub fn host_address(&self, addr: IpAddr) -> Option<&HostAddress> {
        self.ipv4addrs
            .iter()
            .chain(self.ipv6addrs.iter())
            .find(|h| h.addr() == Some(addr))
    }
}

/// `ipv4address` / `ipv6address`: who uses one address.
#[derive(Debug, Clone, Deserialize)]
pub struct IpAddressEntry {
    #[serde(default)]
    pub ip_address: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub network_view: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub objects: Vec<String>,
}

impl IpAddressEntry {
    pub fn addr(&self) -> Option<IpAddr> {
        self.ip_address.as_deref()?.trim().parse().ok()
    }

    /// Used by something other than the network itself (its network/broadcast address).
    pub fn is_held(&self) -> bool {
        self.status.as_deref() == Some("USED")
            && self
                .types
                .iter()
                .any(|t| t != "NETWORK" && t != "BROADCAST")
    }
}

/// The object type of a ref: `record:host/ZG5z…:name/view` → `record:host`.
pub fn object_type(reference: &str) -> &str {
    reference.split('/').next().unwrap_or_default()
}

/// An extensible attribute's value as text (`{"value": "x"}`; lists joined with `,`).
pub fn ea_text(v: &Value) -> Option<String> {
    let inner = v.get("value").unwrap_or(v);
    match inner {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| {
                    ea_text(&Value::Object(Map::from_iter([(
                        "value".into(),
                        i.clone(),
                    )])))
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_and_eas_read_leniently() {
        let n: Network = serde_json::from_value(json!({
            "_ref": "network/ZG5zLm5ldHdvcmskMTAuMjAuMC4wLzI0LzA:10.20.0.0/24/default",
            "network": "10.20.0.0/24", "network_view": "default",
            "extattrs": {"Site": {"value": "lab"}, "Tiers": {"value": ["a", "b"]}, "N": {"value": 7}},
            "options": [
                {"name": "routers", "num": 3, "use_option": true, "value": "10.20.0.1", "vendor_class": "DHCP"},
                {"name": "domain-name", "num": 15, "use_option": false, "value": "x", "vendor_class": "DHCP"}
            ]
        }))
        .expect("network");
        assert_eq!(
            n.cidr().map(|c| c.to_string()).as_deref(),
            Some("10.20.0.0/24")
        );
        assert_eq!(n.option(&["routers"]), Some("10.20.0.1"));
        assert_eq!(
            n.option(&["domain-name"]),
            None,
            "use_option false is not in use"
        );
        assert_eq!(ea_text(&n.extattrs["Tiers"]).as_deref(), Some("a,b"));
        assert_eq!(ea_text(&n.extattrs["N"]).as_deref(), Some("7"));
    }

    #[test]
    fn utilization_reads_leniently_and_clamps() {
        let with = |u: Value| -> Option<u8> {
            let mut v = json!({"_ref": "network/x:10.0.0.0/24/default", "network": "10.0.0.0/24"});
            if !u.is_null() {
                v["utilization"] = u;
            }
            serde_json::from_value::<Network>(v)
                .expect("a network whatever its utilization")
                .utilization_percent()
        };
        assert_eq!(with(json!(37)), Some(37));
        assert_eq!(with(json!(0)), Some(0));
        assert_eq!(with(json!(37.9)), Some(37));
        assert_eq!(with(json!("42")), Some(42));
        assert_eq!(with(json!(" 42 % ")), Some(42));
        assert_eq!(with(json!(250)), Some(100), "clamped to 100");
        assert_eq!(with(json!(-5)), Some(0), "clamped to 0");
        assert_eq!(with(Value::Null), None, "absent");
        assert_eq!(with(json!("n/a")), None);
        assert_eq!(with(json!({"value": 3})), None);
        assert_eq!(with(json!([3])), None);
        assert_eq!(with(json!(true)), None);
    }

    #[test]
    fn pages_end_without_a_cursor() {
        let p: Page =
            serde_json::from_value(json!({"result": [1, 2], "next_page_id": 1})).expect("page");
        assert_eq!(p.next().as_deref(), Some("1"));
        let last: Page = serde_json::from_value(json!({"result": []})).expect("page");
        assert_eq!(last.next(), None);
        assert_eq!(
            object_type("record:host_ipv4addr/lMmQ:22.0.0.2/h/default"),
            "record:host_ipv4addr"
        );
    }
}
