//! vRA wire shapes: a lenient reader for the `inputs` dict vRA hands an ABX action, and the result
//! dicts the actions must return.
//!
//! vRA is inconsistent about types (`"nicIndex": "0"` in one operation, `0` in the next; booleans as
//! `"true"`), drops fields between releases (`resourceInfo.owner` in 8.6.0) and adds new ones in
//! others. So inputs are read field by field: numbers and booleans as text or native, `null` and
//! absent alike, unknown fields ignored, and every error names the field by its full path
//! (`ipAllocations[1].ipRangeIds[0]`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::domain::{Block, Family, IpamError, Network, Tag};

/// One field of the inputs, with its path for error messages.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    value: Option<&'a Value>,
    path: String,
}

fn invalid(path: &str, why: impl Into<String>) -> IpamError {
    IpamError::invalid(if path.is_empty() { "body" } else { path }, why)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl<'a> Field<'a> {
    /// The whole inputs dict. It must be a JSON object.
    pub fn root(value: &'a Value) -> Result<Self, IpamError> {
        if !value.is_object() {
            return Err(invalid(
                "body",
                format!(
                    "the action inputs must be a JSON object, not {}",
                    kind_of(value)
                ),
            ));
        }
        Ok(Field {
            value: Some(value),
            path: String::new(),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// A member of an object. Absent, `null`, or a parent that is not an object all read as absent.
    pub fn get(&self, key: &str) -> Field<'a> {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Field {
            value: self
                .value
                .and_then(Value::as_object)
                .and_then(|o| o.get(key))
                .filter(|v| !v.is_null()),
            path,
        }
    }

    pub fn is_present(&self) -> bool {
        self.value.is_some()
    }

    pub fn is_object(&self) -> bool {
        self.value.is_some_and(Value::is_object)
    }

    /// Text; numbers and booleans are given as their text. Empty (or blank) text reads as absent.
    pub fn opt_str(&self) -> Result<Option<String>, IpamError> {
        match self.value {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(invalid(
                &self.path,
                format!("expected text, got {}", kind_of(other)),
            )),
        }
    }

    pub fn req_str(&self) -> Result<String, IpamError> {
        self.opt_str()?
            .ok_or_else(|| invalid(&self.path, "is required"))
    }

    /// A non-negative integer, native or as text (`3`, `"3"`, `3.0`).
    pub fn opt_u64(&self) -> Result<Option<u64>, IpamError> {
        let bad =
            |shown: &str| invalid(&self.path, format!("expected a whole number, got {shown}"));
        match self.value {
            None => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    return Ok(Some(u));
                }
                match n.as_f64() {
                    Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9.0e15 => Ok(Some(f as u64)),
                    _ => Err(bad(&n.to_string())),
                }
            }
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => {
                let t = s.trim();
                if let Ok(u) = t.parse::<u64>() {
                    return Ok(Some(u));
                }
                match t.parse::<f64>() {
                    Ok(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9.0e15 => Ok(Some(f as u64)),
                    _ => Err(bad(&format!("'{s}'"))),
                }
            }
            Some(other) => Err(bad(kind_of(other))),
        }
    }

    /// A boolean, native or as text (`true`, `"True"`, `"1"`, `"yes"`) or 0/1.
    pub fn opt_bool(&self) -> Result<Option<bool>, IpamError> {
        match self.value {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(0) => Ok(Some(false)),
                Some(1) => Ok(Some(true)),
                _ => Err(invalid(
                    &self.path,
                    format!("expected true or false, got {n}"),
                )),
            },
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" => Ok(Some(false)),
                _ => Err(invalid(
                    &self.path,
                    format!("expected true or false, got '{s}'"),
                )),
            },
            Some(other) => Err(invalid(
                &self.path,
                format!("expected true or false, got {}", kind_of(other)),
            )),
        }
    }

    /// The items of a list; absent reads as empty. A single object is taken as a list of one.
    pub fn items(&self) -> Result<Vec<Field<'a>>, IpamError> {
        match self.value {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| Field {
                    value: (!v.is_null()).then_some(v),
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            Some(v @ Value::Object(_)) => Ok(vec![Field {
                value: Some(v),
                path: format!("{}[0]", self.path),
            }]),
            Some(other) => Err(invalid(
                &self.path,
                format!("expected a list, got {}", kind_of(other)),
            )),
        }
    }

    /// A list of text. Also accepted: one text value, and a JSON-encoded list in text (the way vRA
    /// passes multi-valued form fields).
    pub fn str_list(&self) -> Result<Vec<String>, IpamError> {
        match self.value {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => {
                let t = s.trim();
                if t.starts_with('[') {
                    let parsed: Value = serde_json::from_str(t).map_err(|_| {
                        invalid(&self.path, "text starting with '[' is not a JSON list")
                    })?;
                    let inner = Field {
                        value: Some(&parsed),
                        path: self.path.clone(),
                    };
                    return inner.str_list();
                }
                Ok(if t.is_empty() {
                    Vec::new()
                } else {
                    vec![t.to_owned()]
                })
            }
            Some(Value::Array(_)) => {
                let mut out = Vec::new();
                for item in self.items()? {
                    if let Some(s) = item.opt_str()? {
                        out.push(s);
                    }
                }
                Ok(out)
            }
            Some(other) => Err(invalid(
                &self.path,
                format!("expected a list of text, got {}", kind_of(other)),
            )),
        }
    }

    /// A `Map<String,String>` (e.g. `properties`); values given as their text. Absent reads as empty.
    pub fn str_map(&self) -> Result<BTreeMap<String, String>, IpamError> {
        match self.value {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(o)) => Ok(o
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(BTreeMap::new()),
            Some(Value::String(s)) => {
                let parsed: Value = serde_json::from_str(s)
                    .map_err(|_| invalid(&self.path, "expected an object"))?;
                if !parsed.is_object() {
                    return Err(invalid(&self.path, "expected an object"));
                }
                Field {
                    value: Some(&parsed),
                    path: self.path.clone(),
                }
                .str_map()
            }
            Some(other) => Err(invalid(
                &self.path,
                format!("expected an object, got {}", kind_of(other)),
            )),
        }
    }
}

/// The endpoint of a request: nested under `endpoint` for every operation except Validate
/// Endpoint, which has its fields at the top level.
pub fn endpoint<'a>(root: &Field<'a>) -> Field<'a> {
    let nested = root.get("endpoint");
    if nested.is_object() {
        nested
    } else {
        root.clone()
    }
}

/// `"IPv4"` / `"IPv6"` as the contract spells them.
pub fn ip_version(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TagOut {
    pub key: String,
    pub value: String,
}

fn tags_out(tags: &[Tag]) -> Vec<TagOut> {
    tags.iter()
        .map(|t| TagOut {
            key: t.key.clone(),
            value: t.value.clone(),
        })
        .collect()
}

/// `IpRange` (contract p.11-12). `subnetPrefixLength` is sent as text, the way VMware's reference
/// plug-in sends it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpRange {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "startIPAddress")]
    pub start_ip_address: String,
    #[serde(rename = "endIPAddress")]
    pub end_ip_address: String,
    pub ip_version: &'static str,
    pub address_space_id: String,
    pub subnet_prefix_length: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_address: Option<String>,
    pub dns_server_addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub dns_search_domains: Vec<String>,
    pub tags: Vec<TagOut>,
    pub properties: BTreeMap<String, String>,
}

impl IpRange {
    pub fn from_network(n: &Network) -> Self {
        let i = &n.info;
        let mut properties = BTreeMap::new();
        properties.insert("cidr".to_owned(), i.cidr.to_string());
        if let Some(v) = i.vlan {
            properties.insert("vlan".to_owned(), v.to_string());
        }
        if let Some(free) = i.free {
            properties.insert("freeAddresses".to_owned(), free.to_string());
        }
        if let Some(b) = &i.block {
            properties.insert("block".to_owned(), b.clone());
        }
        IpRange {
            id: n.id.to_string(),
            name: i.name.clone(),
            description: i.description.clone().unwrap_or_default(),
            start_ip_address: i.range_start.to_string(),
            end_ip_address: i.range_end.to_string(),
            ip_version: ip_version(n.family()),
            address_space_id: i.address_space.clone(),
            subnet_prefix_length: i.cidr.prefix_len().to_string(),
            gateway_address: i.gateway.map(|g| g.to_string()),
            dns_server_addresses: i.dns_servers.iter().map(ToString::to_string).collect(),
            domain: i.dns_domain.clone(),
            dns_search_domains: i.dns_search_domains.clone(),
            tags: tags_out(&i.tags),
            properties,
        }
    }
}

/// An [`IpRange`] serialised straight from the [`Network`] it describes, to the same JSON, without
/// building one. Get IP Ranges sends pages of 1,000: building `IpRange`s allocated and freed
/// some twenty small objects per range (~20,000 per page), and on a fragmented glibc heap those
/// allocator calls were most of a warm page's time (15 ms of an Infoblox-backed page in
/// `cargo bench --bench gateway -- 2`, which runs the fakes in the gateway's process).
pub struct IpRangeOut<'a>(pub &'a Network);

/// A value written as JSON text through its `Display`, without an intermediate `String`.
struct AsText<T>(T);

impl<T: std::fmt::Display> Serialize for AsText<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `dnsServerAddresses`: the addresses as text.
struct AddressesText<'a>(&'a [std::net::IpAddr]);

impl Serialize for AddressesText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(AsText))
    }
}

/// `properties`, keys in the order of [`IpRange`]'s `BTreeMap` (block, cidr, freeAddresses,
/// vlan).
struct PropertiesOut<'a>(&'a crate::domain::NetworkInfo);

impl Serialize for PropertiesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let i = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(b) = &i.block {
            m.serialize_entry("block", b)?;
        }
        m.serialize_entry("cidr", &AsText(&i.cidr))?;
        if let Some(free) = i.free {
            m.serialize_entry("freeAddresses", &AsText(free))?;
        }
        if let Some(v) = i.vlan {
            m.serialize_entry("vlan", &AsText(v))?;
        }
        m.end()
    }
}

impl Serialize for IpRangeOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let n = self.0;
        let i = &n.info;
        let mut r = s.serialize_struct("IpRange", 14)?;
        r.serialize_field("id", n.id.as_str())?;
        r.serialize_field("name", &i.name)?;
        r.serialize_field("description", i.description.as_deref().unwrap_or_default())?;
        r.serialize_field("startIPAddress", &AsText(i.range_start))?;
        r.serialize_field("endIPAddress", &AsText(i.range_end))?;
        r.serialize_field("ipVersion", ip_version(n.family()))?;
        r.serialize_field("addressSpaceId", &i.address_space)?;
        r.serialize_field("subnetPrefixLength", &AsText(i.cidr.prefix_len()))?;
        match i.gateway {
            Some(g) => r.serialize_field("gatewayAddress", &AsText(g))?,
            None => r.skip_field("gatewayAddress")?,
        }
        r.serialize_field("dnsServerAddresses", &AddressesText(&i.dns_servers))?;
        match &i.dns_domain {
            Some(d) => r.serialize_field("domain", d)?,
            None => r.skip_field("domain")?,
        }
        r.serialize_field("dnsSearchDomains", &i.dns_search_domains)?;
        // `Tag` serialises as `TagOut` does: {"key", "value"}.
        r.serialize_field("tags", &i.tags)?;
        r.serialize_field("properties", &PropertiesOut(i))?;
        r.end()
    }
}

/// `IpBlock` (contract p.21). The contract names the address space `addressSpace`, the SDK sample
/// `addressSpaceId`; both are sent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "ipBlockCIDR")]
    pub ip_block_cidr: String,
    pub ip_version: &'static str,
    pub address_space_id: String,
    pub address_space: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_address: Option<String>,
    pub dns_server_addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub dns_search_domains: Vec<String>,
    pub tags: Vec<TagOut>,
    pub properties: BTreeMap<String, String>,
}

impl IpBlock {
    pub fn from_block(b: &Block) -> Self {
        let i = &b.info;
        IpBlock {
            id: b.id.to_string(),
            name: i.name.clone(),
            description: i.description.clone().unwrap_or_default(),
            ip_block_cidr: i.cidr.to_string(),
            ip_version: ip_version(Family::of(&i.cidr)),
            address_space_id: i.address_space.clone(),
            address_space: i.address_space.clone(),
            gateway_address: i.gateway.map(|g| g.to_string()),
            dns_server_addresses: i.dns_servers.iter().map(ToString::to_string).collect(),
            domain: i.dns_domain.clone(),
            dns_search_domains: i.dns_search_domains.clone(),
            tags: tags_out(&i.tags),
            properties: BTreeMap::new(),
        }
    }
}

/// `AllocationResult` (contract p.15) with the per-NIC network settings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationResult {
    pub ip_allocation_id: String,
    pub ip_range_id: String,
    pub ip_version: &'static str,
    pub ip_addresses: Vec<String>,
    pub subnet_prefix_length: String,
    pub gateway_addresses: Vec<String>,
    pub dns_server_addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub dns_search_domains: Vec<String>,
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeallocationResult {
    pub ip_deallocation_id: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(v: &Value) -> Field<'_> {
        Field::root(v).expect("object")
    }

    #[test]
    fn numbers_and_booleans_read_from_text_or_native() {
        let v = json!({"a": "3", "b": 3, "c": 3.0, "d": " 7 ", "t": "True", "f": false, "one": 1, "e": ""});
        let f = field_of(&v);
        for k in ["a", "b", "c"] {
            assert_eq!(f.get(k).opt_u64().expect(k), Some(3));
        }
        assert_eq!(f.get("d").opt_u64().expect("d"), Some(7));
        assert_eq!(
            f.get("e").opt_u64().expect("e"),
            None,
            "empty text is absent"
        );
        assert_eq!(f.get("t").opt_bool().expect("t"), Some(true));
        assert_eq!(f.get("f").opt_bool().expect("f"), Some(false));
        assert_eq!(f.get("one").opt_bool().expect("one"), Some(true));
        assert_eq!(f.get("missing").opt_bool().expect("missing"), None);
    }

    #[test]
    fn errors_name_the_full_path() {
        let v = json!({"ipAllocations": [{"size": "1"}, {"size": "many", "ipRangeIds": [{}]}]});
        let f = field_of(&v);
        let items = f.get("ipAllocations").items().expect("items");
        let e = items[1].get("size").opt_u64().expect_err("bad size");
        assert!(
            matches!(&e, IpamError::InvalidInput { field, why } if field == "ipAllocations[1].size" && why.contains("'many'")),
            "{e}"
        );
        let e = items[1]
            .get("ipRangeIds")
            .str_list()
            .expect_err("object in list");
        assert!(
            matches!(&e, IpamError::InvalidInput { field, .. } if field == "ipAllocations[1].ipRangeIds[0]"),
            "{e}"
        );
        let e = f
            .get("ipAllocations")
            .str_map()
            .expect_err("list is no map");
        assert!(matches!(&e, IpamError::InvalidInput { field, .. } if field == "ipAllocations"));
    }

    #[test]
    fn lists_accept_one_value_or_json_text() {
        let v = json!({"one": "r1", "json": "[\"r1\", \"r2\"]", "list": ["r1", null, 2]});
        let f = field_of(&v);
        assert_eq!(f.get("one").str_list().expect("one"), vec!["r1"]);
        assert_eq!(f.get("json").str_list().expect("json"), vec!["r1", "r2"]);
        assert_eq!(f.get("list").str_list().expect("list"), vec!["r1", "2"]);
        assert!(f.get("absent").str_list().expect("absent").is_empty());
    }

    #[test]
    fn null_reads_as_absent_and_root_must_be_an_object() {
        let v = json!({"owner": null});
        assert_eq!(field_of(&v).get("owner").opt_str().expect("null"), None);
        assert!(Field::root(&json!([1])).is_err());
    }

    #[test]
    fn ranges_serialise_straight_from_networks_as_ip_range_does() {
        use crate::domain::{NetworkId, NetworkInfo};
        let base = NetworkInfo::bare(
            "default/10.20.0.0/24",
            "lab \"servers\"",
            "10.20.0.0/24".parse().expect("cidr"),
            (
                "10.20.0.2".parse().expect("ip"),
                "10.20.0.254".parse().expect("ip"),
            ),
        );
        let full = NetworkInfo {
            description: Some("web\ttier".into()),
            gateway: Some("10.20.0.1".parse().expect("ip")),
            dns_servers: vec![
                "10.20.0.53".parse().expect("ip"),
                "2001:db8::53".parse().expect("ip"),
            ],
            dns_domain: Some("lab.example.com".into()),
            dns_search_domains: vec!["lab.example.com".into(), "example.com".into()],
            vlan: Some(20),
            tags: vec![
                Tag {
                    key: "Site".into(),
                    value: "lab".into(),
                },
                Tag {
                    key: "vRA-Enabled".into(),
                    value: "true".into(),
                },
            ],
            free: Some(u64::MAX),
            block: Some("ipam.YmxvY2s".into()),
            ..base.clone()
        };
        let v6 = NetworkInfo {
            cidr: "2001:db8:20::/64".parse().expect("cidr"),
            range_start: "2001:db8:20::2".parse().expect("ip"),
            range_end: "2001:db8:20::ffff:ffff:ffff:fffe".parse().expect("ip"),
            gateway: Some("2001:db8:20::1".parse().expect("ip")),
            free: Some(0),
            ..base.clone()
        };
        for info in [base, full, v6] {
            let n = Network {
                id: NetworkId::new("ipam", &info.backend_id),
                info,
            };
            assert_eq!(
                serde_json::to_string(&IpRangeOut(&n)).expect("json"),
                serde_json::to_string(&IpRange::from_network(&n)).expect("json"),
            );
        }
    }

    #[test]
    fn the_endpoint_is_nested_except_for_validate() {
        let nested = json!({"endpoint": {"authCredentialsLink": "x"}});
        let f = field_of(&nested);
        assert_eq!(endpoint(&f).path(), "endpoint");
        let top = json!({"authCredentialsLink": "x"});
        let f = field_of(&top);
        assert_eq!(endpoint(&f).path(), "");
    }
}
