//! Avi wire shapes: the lenient reader of `record_info` and the dicts the functions return.
//!
//! The controller (and Avi's own validator) sends partial dicts: keys may be absent, `None`,
//! empty text, or, from the validator's menus, plain text where a list is documented. So every
//! key is optional unless the function cannot work without it, numbers and booleans are read as
//! text, and every error names the field by its path (`record_info.nw_and_subnet_list[1][2]`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;
use serde_json::Value;

use crate::contracts::input::Field;
use crate::domain::{Family, IpamError};

/// `allocation_type` / `ip_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocationType {
    V4Only,
    V6Only,
    V4V6,
}

impl AllocationType {
    /// `V4_ONLY`, `V6_ONLY`, `V4_V6`; also lower case, `-`, spaces, `V4`, `IPv6`, `dual`.
    pub fn parse(text: &str) -> Option<Self> {
        let t: String = text
            .trim()
            .to_ascii_uppercase()
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' ' | '+' | '/'))
            .collect();
        match t.as_str() {
            "V4ONLY" | "V4" | "IPV4" | "IPV4ONLY" | "4" => Some(AllocationType::V4Only),
            "V6ONLY" | "V6" | "IPV6" | "IPV6ONLY" | "6" => Some(AllocationType::V6Only),
            "V4V6" | "V6V4" | "DUAL" | "DUALSTACK" | "IPV4IPV6" => Some(AllocationType::V4V6),
            _ => None,
        }
    }

    pub fn families(self) -> &'static [Family] {
        match self {
            AllocationType::V4Only => &[Family::V4],
            AllocationType::V6Only => &[Family::V6],
            AllocationType::V4V6 => &[Family::V4, Family::V6],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AllocationType::V4Only => "V4_ONLY",
            AllocationType::V6Only => "V6_ONLY",
            AllocationType::V4V6 => "V4_V6",
        }
    }

    pub fn from_families(v4: bool, v6: bool) -> Option<Self> {
        match (v4, v6) {
            (true, true) => Some(AllocationType::V4V6),
            (true, false) => Some(AllocationType::V4Only),
            (false, true) => Some(AllocationType::V6Only),
            (false, false) => None,
        }
    }
}

pub fn allocation_type(field: &Field<'_>) -> Result<Option<AllocationType>, IpamError> {
    match field.opt_str()? {
        None => Ok(None),
        Some(t) => AllocationType::parse(&t).map(Some).ok_or_else(|| {
            IpamError::invalid(
                field.path(),
                format!("'{t}' is not an allocation type (V4_ONLY, V6_ONLY or V4_V6)"),
            )
        }),
    }
}

/// One `(network, v4_subnet, v6_subnet)` of `nw_and_subnet_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetChoice {
    pub network: Option<String>,
    pub v4: Option<IpNet>,
    pub v6: Option<IpNet>,
    /// `record_info.nw_and_subnet_list[k]`, for messages.
    pub path: String,
}

impl SubnetChoice {
    pub fn subnet(&self, family: Family) -> Option<IpNet> {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }

    /// How Avi shows it: `(network, v4, v6)`.
    pub fn describe(&self) -> String {
        let show = |n: &Option<IpNet>| n.map(|n| n.to_string()).unwrap_or_else(|| "None".into());
        format!(
            "({}, {}, {})",
            self.network.as_deref().unwrap_or("None"),
            show(&self.v4),
            show(&self.v6)
        )
    }
}

/// What a function knows about the record it works on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordInfo {
    pub id: Option<String>,
    pub fqdns: Vec<String>,
    /// Where each of `fqdns` came from (`record_info.fqdns[2]`), for errors.
    pub fqdn_fields: Vec<String>,
    pub allocation_type: Option<AllocationType>,
    pub preferred_ip: Option<IpAddr>,
    pub preferred_ip6: Option<IpAddr>,
    pub subnets: Vec<SubnetChoice>,
}

impl RecordInfo {
    pub fn preferred(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.preferred_ip,
            Family::V6 => self.preferred_ip6,
        }
    }

    pub fn hostname(&self) -> Option<String> {
        self.fqdns.first().cloned()
    }

    /// The fqdns after the first: more DNS names for the record's addresses
    /// (`AllocationRequest::aliases`).
    pub fn aliases(&self) -> Vec<String> {
        self.fqdns.iter().skip(1).cloned().collect()
    }

    /// Each fqdn with the field it came from.
    pub fn named_fqdns(&self) -> Vec<(String, String)> {
        self.fqdn_fields
            .iter()
            .cloned()
            .zip(self.fqdns.iter().cloned())
            .collect()
    }
}

/// Text that stands for "no value" in Avi's and the validator's inputs.
fn blank(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "" | "none" | "null"
    )
}

fn opt_text(field: &Field<'_>) -> Result<Option<String>, IpamError> {
    Ok(field.opt_str()?.filter(|t| !blank(t)))
}

fn preferred(field: &Field<'_>, family: Family) -> Result<Option<IpAddr>, IpamError> {
    let Some(text) = opt_text(field)? else {
        return Ok(None);
    };
    let addr: IpAddr = text
        .parse()
        .map_err(|_| IpamError::invalid(field.path(), format!("'{text}' is not an IP address")))?;
    if Family::of_addr(&addr) != family {
        return Err(IpamError::invalid(
            field.path(),
            format!("{addr} is not an {family} address"),
        ));
    }
    Ok(Some(addr))
}

fn subnet(path: &str, text: Option<String>, family: Family) -> Result<Option<IpNet>, IpamError> {
    let Some(t) = text.filter(|t| !blank(t)) else {
        return Ok(None);
    };
    let net: IpNet = t.parse().map_err(|_| {
        IpamError::invalid(
            path,
            format!("'{t}' is not a subnet in CIDR form (e.g. 10.0.0.0/24)"),
        )
    })?;
    if Family::of(&net) != family {
        return Err(IpamError::invalid(
            path,
            format!("{net} is not an {family} subnet"),
        ));
    }
    Ok(Some(net.trunc()))
}

/// One tuple: a list `[network, v4, v6, …]` (extra items, e.g. counts, ignored) or a dict with
/// `network`, `v4_subnet`, `v6_subnet` (what GetAvailableNetworksAndSubnets returns).
fn subnet_choice(item: &Field<'_>, value: Option<&Value>) -> Result<SubnetChoice, IpamError> {
    let path = item.path().to_owned();
    let (network, v4, v6) = match value {
        Some(Value::Array(_)) => {
            let parts = item.items()?;
            let text = |k: usize| -> Result<Option<String>, IpamError> {
                match parts.get(k) {
                    Some(f) => opt_text(f),
                    None => Ok(None),
                }
            };
            (
                text(0)?,
                (format!("{path}[1]"), text(1)?),
                (format!("{path}[2]"), text(2)?),
            )
        }
        Some(Value::Object(_)) => (
            opt_text(&item.get("network"))?,
            (
                item.get("v4_subnet").path().to_owned(),
                opt_text(&item.get("v4_subnet"))?,
            ),
            (
                item.get("v6_subnet").path().to_owned(),
                opt_text(&item.get("v6_subnet"))?,
            ),
        ),
        Some(Value::String(s)) => return choice_from_text(&path, s),
        _ => {
            return Err(IpamError::invalid(
                path,
                "expected (network, v4_subnet, v6_subnet)",
            ));
        }
    };
    Ok(SubnetChoice {
        network,
        v4: subnet(&v4.0, v4.1, Family::V4)?,
        v6: subnet(&v6.0, v6.1, Family::V6)?,
        path,
    })
}

/// The validator's own menu form: `nw,v4,v6` (`nw,,v6` when there is no v4 subnet).
fn choice_from_text(path: &str, text: &str) -> Result<SubnetChoice, IpamError> {
    let mut parts = text.split(',').map(|p| p.trim().to_owned());
    let (network, v4, v6) = (parts.next(), parts.next(), parts.next());
    Ok(SubnetChoice {
        network: network.filter(|t| !blank(t)),
        v4: subnet(&format!("{path}[1]"), v4, Family::V4)?,
        v6: subnet(&format!("{path}[2]"), v6, Family::V6)?,
        path: path.to_owned(),
    })
}

fn subnet_list(field: &Field<'_>, raw: Option<&Value>) -> Result<Vec<SubnetChoice>, IpamError> {
    let items: Vec<(Field<'_>, Option<&Value>)> = match raw {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) if blank(s) || s.trim() == "[]" => return Ok(Vec::new()),
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.starts_with('[') {
                return Err(IpamError::invalid(
                    field.path(),
                    "give a list of (network, v4_subnet, v6_subnet), not text",
                ));
            }
            // `nw,v4,v6; nw,v4,v6` (the validator's menus pass user text through as is).
            return t
                .split([';', '\n'])
                .filter(|p| !p.trim().is_empty())
                .enumerate()
                .map(|(k, part)| choice_from_text(&format!("{}[{k}]", field.path()), part))
                .collect();
        }
        Some(Value::Array(arr)) => field
            .items()?
            .into_iter()
            .zip(arr.iter().map(Some))
            .collect(),
        Some(Value::Object(_)) => field.items()?.into_iter().map(|f| (f, raw)).collect(),
        Some(other) => {
            return Err(IpamError::invalid(
                field.path(),
                format!("expected a list of (network, v4_subnet, v6_subnet), got {other}"),
            ));
        }
    };
    items
        .iter()
        .filter(|(_, v)| !matches!(v, None | Some(Value::Null)))
        .map(|(f, v)| subnet_choice(f, *v))
        .collect()
}

/// The fqdns in order (normal form, deduplicated), each with its field (`…fqdns[k]`, `k` its
/// index in the list Avi sent).
fn fqdns(field: &Field<'_>, raw: Option<&Value>) -> Result<Vec<(String, String)>, IpamError> {
    // (field, text): a list keeps the index of every item, blank ones included, so the field
    // names the item Avi sent.
    let list: Vec<(String, String)> = match raw {
        // The validator's delete menu passes the raw input line.
        Some(Value::String(s)) => s
            .split([' ', ',', ';', '\t', '\n'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .enumerate()
            .map(|(k, p)| (format!("{}[{k}]", field.path()), p.to_owned()))
            .collect(),
        Some(Value::Array(_)) => {
            let mut out = Vec::new();
            for item in field.items()? {
                if let Some(s) = item.opt_str()? {
                    out.push((item.path().to_owned(), s));
                }
            }
            out
        }
        _ => field
            .str_list()?
            .into_iter()
            .enumerate()
            .map(|(k, p)| (format!("{}[{k}]", field.path()), p))
            .collect(),
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for (path, f) in list {
        // One trailing dot marks an absolute name: dropped from a name with a dot (taken as
        // fully qualified anyway); kept on a single label (`vm.` is not `vm` qualified with the
        // domain) and on a name ending in more dots (an empty label), so DNS refuses them.
        let t = f.trim().to_ascii_lowercase();
        let f = match t.strip_suffix('.') {
            Some(b) if b.contains('.') && !b.ends_with('.') => b.to_owned(),
            _ => t,
        };
        if f.is_empty() || blank(&f) {
            continue;
        }
        if f.len() > 253 || f.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(IpamError::invalid(path, format!("'{f}' is not a DNS name")));
        }
        if !out.iter().any(|(_, o)| *o == f) {
            out.push((path, f));
        }
    }
    Ok(out)
}

/// Reads a `record_info` dict (`name` is its path in the request, e.g. `record_info`).
pub fn record_info(body: &Value, name: &str) -> Result<RecordInfo, IpamError> {
    let raw = body.get(name).filter(|v| !v.is_null());
    let root = Field::root(body)?;
    let field = root.get(name);
    match raw {
        None => return Err(IpamError::invalid(name, "is required (a dict)")),
        Some(Value::Object(_)) => {}
        Some(_) => return Err(IpamError::invalid(name, "expected a dict")),
    }
    let get_raw = |k: &str| raw.and_then(|v| v.get(k)).filter(|v| !v.is_null());
    let (fqdn_fields, fqdns) = fqdns(&field.get("fqdns"), get_raw("fqdns"))?
        .into_iter()
        .unzip();
    Ok(RecordInfo {
        id: opt_text(&field.get("id"))?,
        fqdns,
        fqdn_fields,
        allocation_type: allocation_type(&field.get("allocation_type"))?,
        preferred_ip: preferred(&field.get("preferred_ip"), Family::V4)?,
        preferred_ip6: preferred(&field.get("preferred_ip6"), Family::V6)?,
        subnets: subnet_list(
            &field.get("nw_and_subnet_list"),
            get_raw("nw_and_subnet_list"),
        )?,
    })
}

/// One entry of GetAvailableNetworksAndSubnets. Field order is the wire order: Avi's validator
/// turns these dicts into tuples by order, `(network, v4_subnet, v6_subnet[, counts])`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkEntry {
    pub network: String,
    pub v4_subnet: Option<String>,
    pub v6_subnet: Option<String>,
    /// Free addresses, when the backend knows (as text, as Avi's docstring types it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v4_available_ip_count: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v6_available_ip_count: Option<String>,
}

/// `alloc_info`: what Create, Update and Get return. Keys of an absent family are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AllocInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v4_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v4_subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v6_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v6_subnet: Option<String>,
    pub network: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn allocation_types_parse_leniently() {
        assert_eq!(
            AllocationType::parse("V4_ONLY"),
            Some(AllocationType::V4Only)
        );
        assert_eq!(
            AllocationType::parse("v6_only "),
            Some(AllocationType::V6Only)
        );
        assert_eq!(AllocationType::parse("V4-V6"), Some(AllocationType::V4V6));
        assert_eq!(AllocationType::parse("V5"), None);
    }

    #[test]
    fn record_info_reads_tuples_dicts_and_text() {
        let body = json!({"record_info": {
            "id": 123,
            "fqdns": ["VS.example.com.", "vs.example.com", "b.example.com"],
            "allocation_type": "v4_v6",
            "preferred_ip": "",
            "preferred_ip6": "2001:db8::5",
            "nw_and_subnet_list": [
                ["n1", "10.0.0.0/24", null],
                {"network": "n2", "v4_subnet": null, "v6_subnet": "2001:db8::/64"},
                "n3,,2001:db8:1::/64"
            ]
        }});
        let r = record_info(&body, "record_info").expect("reads");
        assert_eq!(r.id.as_deref(), Some("123"));
        assert_eq!(r.fqdns, vec!["vs.example.com", "b.example.com"]);
        assert_eq!(
            r.fqdn_fields,
            ["record_info.fqdns[0]", "record_info.fqdns[2]"],
            "each name keeps the index Avi sent it at"
        );
        assert_eq!(r.allocation_type, Some(AllocationType::V4V6));
        assert_eq!(r.preferred_ip, None);
        assert_eq!(r.preferred_ip6, Some("2001:db8::5".parse().expect("ip")));
        assert_eq!(r.subnets.len(), 3);
        assert_eq!(r.subnets[0].v4, Some("10.0.0.0/24".parse().expect("net")));
        assert_eq!(r.subnets[1].network.as_deref(), Some("n2"));
        assert_eq!(
            r.subnets[2].v6,
            Some("2001:db8:1::/64".parse().expect("net"))
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let body =
            json!({"record_info": {"id": "x", "nw_and_subnet_list": [["n", "10.0.0.0/33", null]]}});
        let e = record_info(&body, "record_info").expect_err("bad cidr");
        assert!(
            matches!(&e, IpamError::InvalidInput { field, .. } if field == "record_info.nw_and_subnet_list[0][1]"),
            "{e:?}"
        );
        let body = json!({"record_info": {"id": "x", "preferred_ip": "2001:db8::1"}});
        let e = record_info(&body, "record_info").expect_err("v6 as v4");
        assert!(
            matches!(&e, IpamError::InvalidInput { field, .. } if field == "record_info.preferred_ip"),
            "{e:?}"
        );
    }

    #[test]
    fn network_entries_keep_their_key_order() {
        let e = NetworkEntry {
            network: "n".into(),
            v4_subnet: Some("10.0.0.0/24".into()),
            v6_subnet: None,
            v4_available_ip_count: Some("5".into()),
            v6_available_ip_count: None,
        };
        assert_eq!(
            serde_json::to_string(&e).expect("json"),
            r#"{"network":"n","v4_subnet":"10.0.0.0/24","v6_subnet":null,"v4_available_ip_count":"5"}"#
        );
    }
}
