//! phpIPAM's JSON shapes, read leniently.
//!
//! phpIPAM 1.8 on PHP ≥ 8.1 sends most ints as JSON numbers, but `mask` is always a string, the
//! `id` of a 201 answer is a string, and with `api-stringify-results: 1` every scalar is a string.
//! Every number, id and flag here accepts both spellings; fields whose type varies between calls
//! (`permissions`, `location`) are not read at all.

use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::domain::Tag;

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
    serde_path_to_error::deserialize(v).map_err(|e| wire_error(object, e))
}

/// [`parse`] from a borrowed value (no copy of the whole object first).
pub fn parse_ref<'a, T: Deserialize<'a>>(object: &str, v: &'a Value) -> Result<T, WireError> {
    serde_path_to_error::deserialize(v).map_err(|e| wire_error(object, e))
}

fn wire_error(object: &str, e: serde_path_to_error::Error<serde_json::Error>) -> WireError {
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

/// Every answer: `{"code", "success", "message"?, "id"?, "data"?, "time"}`. `data` is JSON as is
/// (`D = Value`), or read by [`EnvelopeSeed`] into something smaller while it is parsed.
#[derive(Debug, Deserialize)]
pub struct Envelope<D = Value> {
    #[serde(default, deserialize_with = "flag")]
    pub success: bool,
    #[serde(default, deserialize_with = "opt_text")]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    pub id: Option<u64>,
    #[serde(default = "none")]
    pub data: Option<D>,
}

fn none<D>() -> Option<D> {
    None
}

impl<D> Default for Envelope<D> {
    fn default() -> Self {
        Envelope {
            success: false,
            message: None,
            id: None,
            data: None,
        }
    }
}

/// Reads an answer whose `data` goes through `seed` as it is parsed, so a large `data` (a listing
/// of 10,000 subnets) never exists as one JSON tree. The other members are read as [`Envelope`]
/// reads them; an answer that is not a JSON object is an error.
pub struct EnvelopeSeed<S>(pub S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for EnvelopeSeed<S> {
    type Value = Envelope<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V<S>(S);
        impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for V<S> {
            type Value = Envelope<S::Value>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a phpIPAM answer object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut env = Envelope::default();
                let mut seed = Some(self.0);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "success" => {
                            env.success = map
                                .next_value::<Option<Value>>()?
                                .as_ref()
                                .is_some_and(value_flag)
                        }
                        "message" => {
                            env.message = map
                                .next_value::<Option<Value>>()?
                                .as_ref()
                                .and_then(value_text)
                                .filter(|s| !s.trim().is_empty())
                        }
                        "id" => {
                            env.id = map
                                .next_value::<Option<Value>>()?
                                .as_ref()
                                .and_then(value_u64)
                        }
                        "data" => match seed.take() {
                            Some(s) => env.data = Some(map.next_value_seed(s)?),
                            None => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        },
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(env)
            }
        }
        d.deserialize_map(V(self.0))
    }
}

/// Reads a `data` member as [`list`] does (an array, one object, or nothing), handing each item
/// to `read` as soon as it is parsed: only one item is ever held as a JSON tree.
pub struct ListSeed<F, T>(pub F, pub PhantomData<T>);

impl<F, T> ListSeed<F, T> {
    pub fn new(read: F) -> Self {
        ListSeed(read, PhantomData)
    }
}

impl<'de, F: FnMut(Value) -> T, T> DeserializeSeed<'de> for ListSeed<F, T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(Value) -> T, T> Visitor<'de> for ListSeed<F, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element::<Value>()? {
            out.push((self.0)(v));
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<Vec<T>, A::Error> {
        let v = Value::deserialize(MapAccessDeserializer::new(map))?;
        Ok(vec![(self.0)(v)])
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }
}

/// A whole answer whose `data` is a list of subnets, each read by [`Subnet::read`] (keeping
/// `fields`) as it is parsed.
pub fn subnet_list(
    body: &[u8],
    fields: &[&str],
) -> serde_json::Result<Envelope<Vec<Result<Subnet, WireError>>>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let env =
        EnvelopeSeed(ListSeed::new(|v: Value| Subnet::read(&v, fields))).deserialize(&mut de)?;
    de.end()?;
    Ok(env)
}

#[derive(Debug, Clone, Deserialize)]
pub struct Section {
    #[serde(deserialize_with = "req_u64")]
    pub id: u64,
    #[serde(default, deserialize_with = "opt_text")]
    pub name: Option<String>,
}

/// A subnet as `GET /sections/{id}/subnets/`, `GET /subnets/{id}/` and `GET /subnets/` give it:
/// what the gateway reads of it, not the whole record (a listing keeps 10,000 of these).
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
    #[serde(rename = "nameserverId", default, deserialize_with = "opt_u64")]
    pub nameserver_id: Option<u64>,
    /// `nameservers.namesrv1` (`;`-separated), parsed.
    #[serde(rename = "nameservers", default, deserialize_with = "nameserver_list")]
    dns_servers: Vec<IpAddr>,
    /// `usage.freehosts`.
    #[serde(rename = "usage", default, deserialize_with = "usage_free")]
    free_hosts: Option<u64>,
    /// Every custom field (`custom_…`, top-level or nested under `custom_fields`) with a value,
    /// by name.
    #[serde(skip)]
    pub tags: Vec<Tag>,
    /// The fields asked for by name when the subnet was read (selector and DNS fields), as
    /// text: `(name, value)`.
    #[serde(skip)]
    fields: Vec<(String, String)>,
}

impl Subnet {
    /// Reads a subnet keeping every named field (see [`Subnet::read`] for a listing).
    pub fn from_value(v: Value) -> Result<Self, WireError> {
        Self::read_keeping(&v, |_| true)
    }

    /// Reads a subnet keeping, besides its typed fields and custom fields, only the `fields`
    /// named (for [`Subnet::field`]).
    pub fn read(v: &Value, fields: &[&str]) -> Result<Self, WireError> {
        Self::read_keeping(v, |name| fields.contains(&name))
    }

    fn read_keeping(v: &Value, keep: impl Fn(&str) -> bool) -> Result<Self, WireError> {
        let mut s: Subnet = parse_ref("subnet", v)?;
        if let Value::Object(map) = v {
            s.tags = custom_tags(map);
            s.fields = named_fields(map, keep);
        }
        Ok(s)
    }

    /// Network address and prefix, host bits cleared.
    pub fn cidr(&self) -> Option<IpNet> {
        let addr: IpAddr = self.subnet.as_deref()?.trim().parse().ok()?;
        let mask = u8::try_from(self.mask?).ok()?;
        IpNet::new(addr, mask).ok().map(|n| n.trunc())
    }

    /// A kept field by name, as text: top-level (`custom_vRA_Range`, `isPool`) or nested under
    /// `custom_fields` (apps with "nest custom fields"); `None` when null, not a scalar, or not
    /// kept when the subnet was read.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Nameserver addresses (`namesrv1` is `;`-separated).
    pub fn dns_servers(&self) -> Vec<IpAddr> {
        self.dns_servers.clone()
    }

    pub fn free_hosts(&self) -> Option<u64> {
        self.free_hosts
    }
}

fn nameserver_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .and_then(|ns| ns.get("namesrv1"))
        .and_then(Value::as_str)
        .map(|list| {
            list.split([';', ',', ' '])
                .filter_map(|s| s.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default())
}

fn usage_free<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .and_then(|u| u.get("freehosts"))
        .and_then(value_count))
}

/// Custom fields as tags: top-level ones first, then those nested under `custom_fields`; one
/// per name (the top-level one wins), sorted by name.
fn custom_tags(raw: &Map<String, Value>) -> Vec<Tag> {
    let nested = raw.get("custom_fields").and_then(Value::as_object);
    let mut tags: Vec<Tag> = raw
        .iter()
        .chain(nested.into_iter().flatten())
        .filter(|(k, _)| k.starts_with("custom_") && k.as_str() != "custom_fields")
        .filter_map(|(k, v)| {
            value_text(v).map(|value| Tag {
                key: k.clone(),
                value,
            })
        })
        .collect();
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    tags.dedup_by(|a, b| a.key == b.key);
    tags
}

/// The kept fields as [`field`] finds them (top-level, else nested), as text.
fn named_fields(raw: &Map<String, Value>, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let top = raw.iter().filter(|(k, _)| k.as_str() != "custom_fields");
    let nested = raw
        .get("custom_fields")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, _)| !raw.contains_key(k.as_str()));
    top.chain(nested)
        .filter(|(k, _)| keep(k))
        .filter_map(|(k, v)| value_text(v).map(|t| (k.clone(), t)))
        .collect()
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
        let mut a: Address = parse_ref("address", &v)?;
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
    /// The row id subnets refer to (`vlanId`); `number` is the 802.1Q tag.
    #[serde(rename = "vlanId", default, deserialize_with = "opt_u64")]
    pub id: Option<u64>,
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
        assert_eq!(top.field("custom_vRA_Range"), Some("1"));
        assert_eq!(nested.field("custom_vRA_Range"), Some("1"));
    }

    #[test]
    fn a_listed_subnet_keeps_the_fields_asked_for_and_its_custom_fields_only() {
        let record = json!({"id": "7", "subnet": "10.10.0.0", "mask": "24", "sectionId": 3,
            "description": "web", "isPool": 0, "nameserverId": "2", "vrfId": null,
            "permissions": {"3": "2"}, "location": null, "Site": "lab", "isFull": 1,
            "custom_vRA_Range": 1, "custom_Empty": null,
            "custom_fields": {"custom_DNS_Domain": "lab.example", "custom_vRA_Range": "0",
                "custom_Search": "a.example; b.example"},
            "nameservers": {"id": 2, "namesrv1": "10.0.0.53;10.0.0.54", "permissions": "3"},
            "usage": {"freehosts": "250", "maxhosts": "254", "Used": 4}});
        let wanted = [
            "Site",
            "custom_DNS_Domain",
            "custom_Search",
            "custom_vRA_Range",
        ];
        let s = Subnet::read(&record, &wanted).expect("subnet");
        // Top-level selector field, a nested custom field, and the top-level one winning.
        assert_eq!(s.field("Site"), Some("lab"));
        assert_eq!(s.field("custom_DNS_Domain"), Some("lab.example"));
        assert_eq!(s.field("custom_Search"), Some("a.example; b.example"));
        assert_eq!(s.field("custom_vRA_Range"), Some("1"));
        // Fields not asked for are not kept.
        assert_eq!(s.field("isFull"), None);
        assert_eq!(s.field("description"), None);
        assert_eq!(s.nameserver_id, Some(2));
        assert_eq!(
            s.dns_servers(),
            vec![
                "10.0.0.53".parse::<IpAddr>().expect("a"),
                "10.0.0.54".parse().expect("b")
            ]
        );
        assert_eq!(s.free_hosts(), Some(250));
        let tags: Vec<(&str, &str)> = s
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            tags,
            [
                ("custom_DNS_Domain", "lab.example"),
                ("custom_Search", "a.example; b.example"),
                ("custom_vRA_Range", "1")
            ]
        );
        // The same as the whole record read as before.
        let all = Subnet::from_value(record.clone()).expect("all");
        assert_eq!(all.tags, s.tags);
        for name in wanted {
            assert_eq!(all.field(name), s.field(name), "{name}");
        }
        assert_eq!(all.field("isFull"), Some("1"));
        // A null top-level field hides a nested one, as phpIPAM's lookup does.
        let hidden = Subnet::read(
            &json!({"id": 1, "custom_X": null, "custom_fields": {"custom_X": "n"}}),
            &["custom_X"],
        )
        .expect("hidden");
        assert_eq!(hidden.field("custom_X"), None);
        assert_eq!(hidden.tags.len(), 1, "the nested value is still a tag");
    }

    #[test]
    fn subnet_listings_are_read_item_by_item() {
        let body = json!({"code": 200, "success": true, "time": 0.01, "data": [
            {"id": 1, "subnet": "10.0.0.0", "mask": "24", "custom_vRA_Range": "1"},
            {"subnet": "10.0.1.0", "mask": "24"},
            {"id": "3", "subnet": "10.0.2.0", "mask": 24, "custom_fields": {"custom_vRA_Range": 1}}
        ]})
        .to_string();
        let env = subnet_list(body.as_bytes(), &["custom_vRA_Range"]).expect("listing");
        assert!(env.success);
        let items = env.data.expect("data");
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().map(|s| s.id), Ok(1));
        assert_eq!(
            items[1]
                .as_ref()
                .map(|s| s.id)
                .map_err(|e| e.field.as_str()),
            Err("subnet"),
            "a record without an id is skipped, naming why"
        );
        assert_eq!(
            items[2]
                .as_ref()
                .ok()
                .and_then(|s| s.field("custom_vRA_Range")),
            Some("1")
        );
        // One object, nothing, an error answer; and what is not phpIPAM's JSON.
        let one = subnet_list(br#"{"success": 1, "data": {"id": 9}}"#, &[]).expect("one");
        assert_eq!(one.data.map(|d| d.len()), Some(1));
        let none = subnet_list(br#"{"success": true, "data": null}"#, &[]).expect("none");
        assert_eq!(none.data.map(|d| d.len()), Some(0));
        let err = subnet_list(
            br#"{"code": 404, "success": false, "message": "No subnets found", "id": "5"}"#,
            &[],
        )
        .expect("error answer");
        assert!(!err.success && err.data.is_none());
        assert_eq!(
            (err.message.as_deref(), err.id),
            (Some("No subnets found"), Some(5))
        );
        assert!(subnet_list(b"<html>oops</html>", &[]).is_err());
        assert!(subnet_list(br#"{"data": []} trailing"#, &[]).is_err());
    }

    #[test]
    fn ipv6_free_counts_saturate() {
        let s =
            Subnet::from_value(json!({"id": 9, "usage": {"freehosts": "18446744073709551616"}}))
                .expect("v6");
        assert_eq!(s.free_hosts(), Some(u64::MAX));
    }
}
