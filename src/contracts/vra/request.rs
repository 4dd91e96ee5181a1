//! What every vRA operation reads from the action's inputs: the JSON body, addresses, range and
//! block ids, and the owners the gateway writes for a vRA resource (`vra:<resourceInfo.id>/…`).

use std::net::IpAddr;

use axum::Json;
use serde_json::Value;

use super::errors::VraError;
use crate::contracts::input::Field;
use crate::domain::{Allocation, IpamError, NetworkId, Owner};

pub(super) type VraResult = Result<Json<Value>, VraError>;

pub(super) fn parse_body(operation: &'static str, body: &[u8]) -> Result<Value, VraError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(VraError::new(
            operation,
            IpamError::invalid("body", "the action inputs (a JSON object) are required"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        VraError::new(
            operation,
            IpamError::invalid("body", format!("not valid JSON: {e}")),
        )
    })
}

pub(super) fn parse_ip(field: &str, text: &str) -> Result<IpAddr, IpamError> {
    text.trim()
        .parse()
        .map_err(|_| IpamError::invalid(field, format!("'{text}' is not an IP address")))
}

pub(super) fn parse_id(
    field: &str,
    text: &str,
    what: &str,
    source: &str,
) -> Result<NetworkId, IpamError> {
    NetworkId::parse(text).ok_or_else(|| {
        IpamError::invalid(
            field,
            format!("'{text}' is not {what} id from this gateway (ids come from {source})"),
        )
    })
}

/// Owner text for a vRA resource: `vra:<resourceInfo.id>`, hashed when the id is too long (or
/// unprintable) to be stored as an owner: 180 bytes leave room for the `/nic<k>/<n>` suffixes
/// within [`crate::domain::OWNER_MAX_LEN`].
pub(super) fn owner_base(resource_id: &str) -> String {
    Owner::namespaced("vra", resource_id, 180)
}

pub(super) fn owner(field: &str, text: String) -> Result<Owner, IpamError> {
    Owner::parse(&text).map_err(|why| IpamError::invalid(field, why))
}

/// Whether an allocation's owner belongs to the vRA resource `base` (`vra:<id>`).
pub(super) fn owned_by(a: &Allocation, base: &str) -> bool {
    a.owner.as_ref().is_some_and(|o| {
        o.as_str()
            .strip_prefix(base)
            .is_some_and(|r| r.starts_with('/'))
    })
}

/// The machine's host name: the first of `hostName`, `hostname`, `name` in `resourceInfo`.
pub(super) fn resource_hostname(resource: &Field<'_>) -> Result<Option<String>, IpamError> {
    for key in ["hostName", "hostname", "name"] {
        if let Some(h) = resource.get(key).opt_str()? {
            return Ok(Some(h));
        }
    }
    Ok(None)
}

/// The machine's opt-out of DNS registration: `resourceInfo.properties["ipamgw.dns"]` =
/// `"false"` (a vRA custom property; `"true"` or absent registers the host name).
pub(crate) const DNS_OPT_OUT_PROPERTY: &str = "ipamgw.dns";

pub(super) fn dns_wanted(root: &Field<'_>) -> Result<bool, IpamError> {
    let f = root
        .get("resourceInfo")
        .get("properties")
        .get(DNS_OPT_OUT_PROPERTY);
    match f.opt_str()?.as_deref().map(str::trim) {
        None => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(IpamError::invalid(
            f.path(),
            format!("'{v}' is neither \"true\" nor \"false\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_resource_ids_are_hashed_into_a_valid_owner() {
        assert_eq!(
            owner_base("/resources/compute/1"),
            "vra:/resources/compute/1"
        );
        let long = "x".repeat(400);
        let b = owner_base(&long);
        assert!(b.starts_with("vra:sha256-") && b.len() < 60, "{b}");
        assert!(Owner::parse(&format!("{b}/nic0/255")).is_ok());
        assert_eq!(owner_base(&long), b, "stable");
    }
}
