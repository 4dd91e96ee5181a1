//! What every Avi function reads and writes: the JSON body, the backend check, the owner of an
//! Avi record id (`avi:<id>`), the record's description and DNS names, and the answer itself.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::dto::RecordInfo;
use super::errors::{AviError, core};
use crate::contracts::input::Field;
use crate::domain::{Allocation, IpamError, Network, Owner, RecordDetails};
use crate::service::Caller;

/// What a function returns, serialised straight from its struct so the keys keep their order
/// (`serde_json::Value` objects would sort them; Avi's validator reads list entries by order).
pub(super) type AviResult = Result<Response, AviError>;

pub(super) fn answer<T: serde::Serialize>(value: T) -> AviResult {
    Ok(Json(value).into_response())
}

/// Joins the two halves of a dual-stack network id (gateway ids never contain it).
pub(super) const PAIR_SEPARATOR: char = '+';

pub(super) fn parse_body(function: &'static str, body: &[u8]) -> Result<Value, AviError> {
    let invalid = |why: String| AviError::from_core(function, IpamError::invalid("body", why));
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "the function's arguments (a JSON object) are required".into(),
        ));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(invalid(
            "the function's arguments must be a JSON object".into(),
        ));
    }
    Ok(v)
}

/// `auth_params.backend`, when given, must be the backend the client is bound to.
pub(super) fn check_backend(
    function: &'static str,
    body: &Value,
    caller: &Caller,
) -> Result<(), AviError> {
    let root = Field::root(body).map_err(core(function))?;
    let field = root.get("auth_params").get("backend");
    let wanted = field.opt_str().map_err(core(function))?;
    if let Some(b) = wanted
        && b != caller.backend
    {
        return Err(AviError::from_core(
            function,
            IpamError::invalid(
                field.path(),
                format!(
                    "the script parameter 'backend' is '{b}', but client '{}' is bound to backend '{}'",
                    caller.name, caller.backend
                ),
            ),
        ));
    }
    Ok(())
}

/// Owner text for a vsvip: `avi:<id>`, hashed when the id is too long or unprintable.
pub(super) fn owner_of(id: &str) -> Result<Owner, IpamError> {
    Owner::parse(&Owner::namespaced("avi", id, 200))
        .map_err(|why| IpamError::invalid("record_info.id", why))
}

pub(super) fn required_id(
    function: &'static str,
    r: &RecordInfo,
    path: &str,
) -> Result<String, AviError> {
    r.id.clone().ok_or_else(|| {
        AviError::from_core(
            function,
            IpamError::invalid(
                format!("{path}.id"),
                "is required: the vsvip uuid names the record",
            ),
        )
    })
}

pub(super) fn description(id: &str, fqdns: &[String]) -> String {
    if fqdns.is_empty() {
        format!("Avi VS VIP {id}")
    } else {
        format!("Avi VS VIP {id} ({})", fqdns.join(", "))
    }
}

/// The fqdns a record's description lists ([`description`]); on a backend that shortens
/// descriptions (phpIPAM keeps 64 characters) the list may be cut, and a cut last name is left
/// out. Avi sends the names again where it matters (`record_info.fqdns` on Delete,
/// `old_record_info.fqdns` on Update); these are for when it does not.
fn described_fqdns(id: &str, description: Option<&str>) -> Vec<String> {
    let Some(rest) = description.and_then(|d| d.strip_prefix(&format!("Avi VS VIP {id} ("))) else {
        return Vec::new();
    };
    let (list, whole) = match rest.strip_suffix(')') {
        Some(list) => (list, true),
        None => (rest, false),
    };
    let mut names: Vec<String> = list.split(", ").map(str::to_owned).collect();
    if !whole {
        names.pop();
    }
    names
}

/// The names a held address of record `id` had: its host name and the further names the
/// backend kept with it ([`Allocation::aliases`], whole on every backend), then the fqdns of
/// `old` (what Avi says the record had) and those its description lists; in that order, once
/// each.
pub(super) fn held_names(id: &str, a: &Allocation, old: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let described = described_fqdns(id, a.description.as_deref());
    let kept = a.hostname.iter().chain(&a.aliases);
    for n in kept.chain(old).chain(described.iter()) {
        let n = n.trim().trim_end_matches('.').to_ascii_lowercase();
        if !n.is_empty() && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

pub(super) fn details(id: &str, r: &RecordInfo) -> RecordDetails {
    RecordDetails {
        hostname: r.hostname(),
        description: Some(description(id, &r.fqdns)),
        mac: None,
        aliases: r.aliases(),
    }
}

pub(super) fn net_label(n: &Network) -> String {
    format!("{} ({})", n.info.cidr, n.info.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_are_hashed_into_a_valid_owner() {
        assert_eq!(owner_of("vsvip-1").expect("owner").as_str(), "avi:vsvip-1");
        let long = "x".repeat(400);
        let o = owner_of(&long).expect("owner");
        assert!(o.as_str().starts_with("avi:sha256-"), "{o}");
        assert_eq!(owner_of(&long).expect("owner"), o, "stable");
    }

    /// The names a backend kept come first and whole, even when the description lost them
    /// (phpIPAM's 64 characters) and Avi sends none (a delete by id).
    #[test]
    fn held_names_read_the_kept_names_first() {
        use crate::domain::{AllocationId, NetworkId};
        let network_id = NetworkId::new("ipam", "7");
        let address = "10.20.0.5".parse().expect("ip");
        let fqdns: Vec<String> = ["vs-c.lab.example.com", "vs-a.lab.example.com"]
            .map(str::to_owned)
            .to_vec();
        let cut = "Avi VS VIP vsvip-1 (vs-c.lab.example.com, vs-a.lab.exa…".to_owned();
        let a = Allocation {
            id: AllocationId::new(&network_id, address),
            network_id,
            address,
            owner: None,
            hostname: Some("vs-c.lab.example.com".into()),
            description: Some(cut),
            mac: None,
            aliases: vec!["VS-A.lab.example.com.".into()],
            reference: None,
        };
        assert_eq!(held_names("vsvip-1", &a, &[]), fqdns);
        let no_kept = Allocation {
            aliases: Vec::new(),
            ..a.clone()
        };
        assert_eq!(
            held_names("vsvip-1", &no_kept, &[]),
            ["vs-c.lab.example.com"],
            "without them the cut description loses vs-a"
        );
        let old = ["vs-b.lab.example.com".to_owned()];
        assert_eq!(
            held_names("vsvip-1", &a, &old),
            [fqdns[0].clone(), fqdns[1].clone(), old[0].clone()]
        );
    }
}
