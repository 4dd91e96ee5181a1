//! phpIPAM's JSON shapes, read leniently.
//!
//! phpIPAM 1.8 on PHP ≥ 8.1 sends most ints as JSON numbers, but `mask` is always a string, the
//! `id` of a 201 answer is a string, and with `api-stringify-results: 1` every scalar is a string.
//! Every number, id and flag here accepts both spellings; fields whose type varies between calls
//! (`permissions`, `location`) are not read at all.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A backend answer that does not have the expected shape; `field` names where
/// (`subnet.mask`, `record.ipv4addrs[0].ipv4addr`, or the object itself for a wrong type or a
/// missing field, which the message then names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WireError {
    pub field: String,
    pub message: String,
}

/// Reads `v` as a `T`, naming the offending field on failure. `object` is what `v` is
/// (`subnet`, `network`), the root of the field path.
pub fn parse<T: DeserializeOwned>(object: &str, v: Value) -> Result<T, WireError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            object.to_owned()
        } else {
            format!("{object}.{path}")
        };
        WireError {
            field,
            message: e.into_inner().to_string(),
        }
    })
}

/// A number or numeric string as `u64` (`13`, `"13"`); null, `""` and other text are `None`.
pub fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(u64::from(*b)),
        _ => None,
    }
}

/// Like [`value_u64`] for counts that may exceed `u64` (IPv6 `freehosts`), saturating.
pub fn value_count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s
            .trim()
            .parse::<u128>()
            .ok()
            .map(|n| u64::try_from(n).unwrap_or(u64::MAX)),
        _ => None,
    }
}

/// A scalar as phpIPAM would compare it: text as is, numbers in decimal, booleans as 0/1.
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        _ => None,
    }
}

/// PHP truthiness of a flag: `1`, `"1"`, `true`.
pub fn value_flag(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        other => value_u64(other).is_some_and(|n| n != 0),
    }
}

fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .and_then(value_u64))
}

fn req_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    value_u64(&v).ok_or_else(|| serde::de::Error::custom(format!("expected an id, got {v}")))
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .is_some_and(value_flag))
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .and_then(value_text)
        .filter(|s| !s.trim().is_empty()))
}

/// Every answer: `{"code", "success", "message"?, "id"?, "data"?, "time"}`.
#[derive(Debug, Default, Deserialize)]
pub struct Envelope {
    #[serde(default, deserialize_with = "flag")]
    pub success: bool,
    #[serde(default, deserialize_with = "opt_text")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    pub id: Option<u64>,
    #[serde(default)]
    pub data: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Section {
    #[serde(deserialize_with = "req_u64")]
    pub id: u64,
    #[serde(default, deserialize_with = "opt_text")]
    pub name: Option<String>,
}

/// A subnet as `GET /sections/{id}/subnets/`, `GET /subnets/{id}/` and `GET /subnets/` give it.
#[derive(Debug, Clone, Deserialize)]
pub struct Subnet {
    #[serde(deserialize_with = "req_u64")]
    pub id: u64,
    #[serde(default, deserialize_with = "opt_text")]
    pub subnet: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    pub mask: Option<u64>,
    #[serde(rename = "sectionId", default, deserialize_with = "opt_u64")]
    pub section_id: Option<u64>,
    #[serde(default, deserialize_with = "opt_text")]
    pub description: Option<String>,
    #[serde(rename = "masterSubnetId", default, deserialize_with = "opt_u64")]
    pub master_subnet_id: Option<u64>,
    #[serde(rename = "vlanId", default, deserialize_with = "opt_u64")]
    pub vlan_id: Option<u64>,
    #[serde(rename = "isFolder", default, deserialize_with = "flag")]
    pub is_folder: bool,
    #[serde(rename = "isPool", default, deserialize_with = "flag")]
    pub is_pool: bool,
    #[serde(rename = "gatewayId", default, deserialize_with = "opt_u64")]
    pub gateway_id: Option<u64>,
    #[serde(default)]
    pub nameservers: Option<Value>,
    #[serde(default)]
    pub usage: Option<Value>,
    /// The whole record, for selector fields and custom fields.
    #[serde(skip)]
    pub raw: Map<String, Value>,
}

impl Subnet {
    pub fn from_value(v: Value) -> Result<Self, WireError> {
        let mut s: Subnet = parse("subnet", v.clone())?;
        if let Value::Object(map) = v {
            s.raw = map;
        }
        Ok(s)
    }

    /// Network address and prefix, host bits cleared.
    pub fn cidr(&self) -> Option<IpNet> {
        let addr: IpAddr = self.subnet.as_deref()?.trim().parse().ok()?;
        let mask = u8::try_from(self.mask?).ok()?;
        IpNet::new(addr, mask).ok().map(|n| n.trunc())
    }

    /// A field by name: top-level (`custom_vRA_Range`, `isPool`) or nested under `custom_fields`
    /// (apps with "nest custom fields").
    pub fn field(&self, name: &str) -> Option<&Value> {
        field(&self.raw, name)
    }

    /// Nameserver addresses (`namesrv1` is `;`-separated).
    pub fn dns_servers(&self) -> Vec<IpAddr> {
        self.nameservers
            .as_ref()
            .and_then(|ns| ns.get("namesrv1"))
            .and_then(Value::as_str)
            .map(|list| {
                list.split([';', ',', ' '])
                    .filter_map(|s| s.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn free_hosts(&self) -> Option<u64> {
        self.usage
            .as_ref()
            .and_then(|u| u.get("freehosts"))
            .and_then(value_count)
    }
}

fn field<'a>(raw: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    raw.get(name)
        .or_else(|| raw.get("custom_fields").and_then(|c| c.get(name)))
        .filter(|v| !v.is_null())
}

/// An address record (`ip` is the API's name for the database's `ip_addr`).
#[derive(Debug, Clone, Deserialize)]
pub struct Address {
    #[serde(deserialize_with = "req_u64")]
    pub id: u64,
    #[serde(rename = "subnetId", default, deserialize_with = "opt_u64")]
    pub subnet_id: Option<u64>,
    #[serde(alias = "ip_addr", default, deserialize_with = "opt_text")]
    pub ip: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub is_gateway: bool,
    #[serde(default, deserialize_with = "opt_text")]
    pub hostname: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub mac: Option<String>,
    #[serde(skip)]
    pub raw: Map<String, Value>,
}

impl Address {
    pub fn from_value(v: Value) -> Result<Self, WireError> {
        let mut a: Address = parse("address", v.clone())?;
        if let Value::Object(map) = v {
            a.raw = map;
        }
        Ok(a)
    }

    pub fn addr(&self) -> Option<IpAddr> {
        self.ip.as_deref()?.trim().parse().ok()
    }

    pub fn text_field(&self, name: &str) -> Option<String> {
        field(&self.raw, name)
            .and_then(value_text)
            .filter(|s| !s.trim().is_empty())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Vlan {
    #[serde(default, deserialize_with = "opt_u64")]
    pub number: Option<u64>,
}

#[derive(Deserialize)]
pub struct Login {
    pub token: String,
}

/// `data` as a list: searches always answer arrays, but a single object is accepted too.
pub fn list(data: Option<Value>) -> Vec<Value> {
    match data {
        Some(Value::Array(items)) => items,
        Some(Value::Object(map)) => vec![Value::Object(map)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_masks_and_flags_accept_numbers_and_strings() {
        let a = Subnet::from_value(json!({"id": 7, "subnet": "10.10.0.0", "mask": "24",
            "isPool": 0, "isFolder": "0", "gatewayId": 11}))
        .expect("numbers");
        let b = Subnet::from_value(json!({"id": "7", "subnet": "10.10.0.0", "mask": 24,
            "isPool": "1", "isFolder": null, "gatewayId": "11"}))
        .expect("strings");
        assert_eq!((a.id, b.id), (7, 7));
        assert_eq!(a.cidr(), b.cidr());
        assert_eq!(
            a.cidr().map(|c| c.to_string()).as_deref(),
            Some("10.10.0.0/24")
        );
        assert!(!a.is_pool && b.is_pool && !a.is_folder && !b.is_folder);
        assert_eq!((a.gateway_id, b.gateway_id), (Some(11), Some(11)));
        let e: Envelope =
            serde_json::from_str(r#"{"code":201,"success":true,"id":"13","data":"10.10.0.2"}"#)
                .expect("envelope");
        assert_eq!(e.id, Some(13));
    }

    #[test]
    fn custom_fields_are_found_top_level_or_nested() {
        let top = Subnet::from_value(json!({"id": 7, "custom_vRA_Range": 1})).expect("top");
        let nested =
            Subnet::from_value(json!({"id": 7, "custom_fields": {"custom_vRA_Range": "1"}}))
                .expect("nested");
        assert_eq!(
            top.field("custom_vRA_Range")
                .and_then(value_text)
                .as_deref(),
            Some("1")
        );
        assert_eq!(
            nested
                .field("custom_vRA_Range")
                .and_then(value_text)
                .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn ipv6_free_counts_saturate() {
        let s =
            Subnet::from_value(json!({"id": 9, "usage": {"freehosts": "18446744073709551616"}}))
                .expect("v6");
        assert_eq!(s.free_hosts(), Some(u64::MAX));
    }
}
