//! The Avi custom DNS profile contract (`../shared/contracts/avi.md` §8, the sibling of the custom
//! IPAM one): four functions the controller calls, `TestLogin`, `GetAvailableDomains`,
//! `CreateOrUpdateDnsRecords(new, old, auth_params)` and `DeleteDnsRecords(records,
//! auth_params)`. The generated script (`ipam-gateway package avi-dns`) posts each function's
//! arguments to `POST /avi/dns/v1/<function>` (authenticated like every Avi endpoint) and returns
//! the answer; a failure is `{"error": {"exception", "code", "message", "function", "field"?}}`
//! and the script raises that `CustomDns…` class.
//!
//! Names are registered through [`crate::dns`]: every fqdn of a record gets A/AAAA records for
//! the record's addresses, the first fqdn also the PTR records.
//!
//! # Which `[dns.<name>]` section serves a client
//!
//! The section attached to the client's backend when the backend names one; until that key
//! exists (see [`AviDnsTargets::from_settings`]), the single `[dns.*]` section when the
//! configuration has exactly one. With none (or several and no attachment) the functions answer
//! `CustomDnsNotImplementedException` naming the backend.
//!
//! # Diff rules of `CreateOrUpdateDnsRecords` (avi.md §8, exactly)
//!
//! - new empty → delete every fqdn of old (for old's addresses);
//! - old empty → create every fqdn of new with new's addresses;
//! - both equal → nothing is sent;
//! - otherwise fqdns only in new → create; fqdns in both → the addresses that left are deleted
//!   and those that came are added (nothing when the addresses did not change); fqdns only in
//!   old → deleted.
//!
//! Every name and address is validated before anything is sent: a bad one, or a name outside the
//! forward zones the section may update, is `CustomDnsGeneralException` naming the field.
//!
//! # Exceptions
//!
//! Wrong credentials → `CustomDnsAuthenticationErrorException` (the 401 of the auth layer); a
//! refused, failed or timed-out DNS update → `CustomDnsGeneralException` with the server's
//! answer and the zone. `RecordAlreadyExists` and `RecordNotFound` are never raised, on purpose:
//! RFC 2136 adds of a record that is already there and deletes of one that is gone are no-ops
//! (RFC 2136 §2.5.1, §2.5.4), so a controller retry converges on the same records instead of
//! failing half-way through a virtual service change.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::gate::Protected;
use crate::config::Settings;
use crate::contracts::ErrorBody;
use crate::dns::{DnsError, DnsUpdater, names};
use crate::service::Caller;
use crate::state::AppState;

/// The four functions of the script: (function name, `POST /avi/dns/v1/<path>`).
pub const FUNCTIONS: [(&str, &str); 4] = [
    ("TestLogin", "test-login"),
    ("GetAvailableDomains", "get-available-domains"),
    ("CreateOrUpdateDnsRecords", "create-or-update-dns-records"),
    ("DeleteDnsRecords", "delete-dns-records"),
];

/// The exception classes the stock DNS script defines (avi.md §8).
pub const EXCEPTION_CLASSES: [&str; 5] = [
    "CustomDnsAuthenticationErrorException",
    "CustomDnsRecordNotFoundException",
    "CustomDnsRecordAlreadyExistsException",
    "CustomDnsNotImplementedException",
    "CustomDnsGeneralException",
];

const NOT_IMPLEMENTED: &str = EXCEPTION_CLASSES[3];
const GENERAL: &str = EXCEPTION_CLASSES[4];

/// The DNS section serving each backend's clients (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct AviDnsTargets {
    by_backend: HashMap<String, Target>,
}

/// One section twice: with PTRs (for the first fqdn) and without (for the others).
#[derive(Debug, Clone)]
struct Target {
    with_ptr: DnsUpdater,
    names_only: DnsUpdater,
}

impl AviDnsTargets {
    /// From the validated settings: for each backend, [`attached_section`] of it.
    pub fn from_settings(settings: &Settings) -> Self {
        let mut by_backend = HashMap::new();
        for b in &settings.backends {
            if let Some(s) = attached_section(settings, b.name()) {
                let mut no_ptr = s.clone();
                no_ptr.ptr = false;
                by_backend.insert(
                    b.name().to_owned(),
                    Target {
                        with_ptr: DnsUpdater::new(s.clone()),
                        names_only: DnsUpdater::new(no_ptr),
                    },
                );
            }
        }
        AviDnsTargets { by_backend }
    }
}

/// The `[dns.<name>]` section for a backend's Avi clients: the one the backend names with
/// `backends.<b>.dns` (the section its allocations register names in); for a backend that names
/// none, the single `[dns.*]` section when there is exactly one, else none (the functions then
/// answer `CustomDnsNotImplementedException`).
pub fn attached_section<'a>(
    settings: &'a Settings,
    backend: &str,
) -> Option<&'a crate::dns::DnsSettings> {
    if let Some(name) = settings
        .dns_attach
        .get(backend)
        .and_then(|a| a.default.as_deref())
    {
        return settings.dns.iter().find(|d| d.name == name);
    }
    match settings.dns.as_slice() {
        [only] => Some(only),
        _ => None,
    }
}

/// `POST /avi/dns/v1/<function>`. Served through `auth::gate::protect` (it cannot be served otherwise).
pub fn router() -> Router<Protected> {
    Router::new()
        .route("/avi/dns/v1/test-login", post(test_login))
        .route(
            "/avi/dns/v1/get-available-domains",
            post(get_available_domains),
        )
        .route(
            "/avi/dns/v1/create-or-update-dns-records",
            post(create_or_update_dns_records),
        )
        .route("/avi/dns/v1/delete-dns-records", post(delete_dns_records))
        .route("/avi/dns/v1/{function}", post(unknown_function))
}

/// A failed function: the class to raise, the message, and the field at fault when there is one.
#[derive(Debug)]
pub struct DnsFnError {
    function: &'static str,
    status: StatusCode,
    exception: &'static str,
    message: String,
    field: Option<String>,
}

impl DnsFnError {
    fn general(function: &'static str, field: impl Into<String>, why: impl Into<String>) -> Self {
        let field = field.into();
        DnsFnError {
            function,
            status: StatusCode::BAD_REQUEST,
            exception: GENERAL,
            message: format!("{function}: invalid {field}: {}", why.into()),
            field: Some(field),
        }
    }

    fn dns(function: &'static str, e: DnsError) -> Self {
        let (status, field) = match &e {
            DnsError::Name(n) => (StatusCode::BAD_REQUEST, Some(n.field.clone())),
            DnsError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, None),
            DnsError::Rejected { .. } | DnsError::Transport { .. } => {
                (StatusCode::BAD_GATEWAY, None)
            }
        };
        DnsFnError {
            function,
            status,
            exception: GENERAL,
            message: format!("{function}: {e}"),
            field,
        }
    }
}

impl IntoResponse for DnsFnError {
    fn into_response(self) -> Response {
        tracing::info!(function = self.function, exception = self.exception,
            error = %self.message, "Avi DNS function failed");
        let code = match self.status {
            StatusCode::BAD_REQUEST => "invalid_input",
            StatusCode::NOT_IMPLEMENTED => "unsupported",
            StatusCode::GATEWAY_TIMEOUT => "timeout",
            _ => "upstream",
        };
        let mut body = ErrorBody::new(code, self.message).with_field(self.field);
        body.error.exception = Some(self.exception.to_owned());
        body.error.function = Some(self.function.to_owned());
        body.into_response(self.status)
    }
}

type Targets = Option<Extension<Arc<AviDnsTargets>>>;

fn target<'a>(
    function: &'static str,
    targets: &'a Targets,
    caller: &Caller,
) -> Result<&'a Target, DnsFnError> {
    targets
        .as_ref()
        .and_then(|Extension(t)| t.by_backend.get(&caller.backend))
        .ok_or_else(|| DnsFnError {
            function,
            status: StatusCode::NOT_IMPLEMENTED,
            exception: NOT_IMPLEMENTED,
            message: format!(
                "{function}: no [dns.*] section serves backend '{}' of client '{}' \
                 (configure exactly one [dns.<name>] section)",
                caller.backend, caller.name
            ),
            field: None,
        })
}

/// `auth_params.backend`, when the script sends it, must be the client's backend.
fn check_backend(
    function: &'static str,
    auth: &AuthParams,
    caller: &Caller,
) -> Result<(), DnsFnError> {
    match &auth.backend {
        Some(b) if *b != caller.backend => Err(DnsFnError::general(
            function,
            "auth_params.backend",
            format!(
                "the script parameter 'backend' is '{b}', but client '{}' is bound to backend '{}'",
                caller.name, caller.backend
            ),
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Default, Deserialize)]
struct AuthParams {
    #[serde(default)]
    backend: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Ips {
    #[serde(default)]
    v4_ips: Option<Vec<String>>,
    #[serde(default)]
    v6_ips: Option<Vec<String>>,
}

/// `records_info` as Avi sends it; `dns_info` keeps its fqdns in the order given (the first one
/// gets the PTR records).
#[derive(Debug, Default, Deserialize)]
struct RecordsInfo {
    #[serde(default)]
    ips: Option<Ips>,
    #[serde(default)]
    dns_info: Option<OrderedKeys>,
}

#[derive(Debug, Default)]
struct OrderedKeys(Vec<String>);

impl<'de> Deserialize<'de> for OrderedKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object from fqdn to its DNS metadata")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(OrderedKeys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// A validated record set: fqdns in order (normal form, deduplicated) and addresses.
#[derive(Debug, Default, PartialEq, Eq)]
struct Records {
    fqdns: Vec<String>,
    ips: BTreeSet<IpAddr>,
}

impl Records {
    fn is_empty(&self) -> bool {
        self.fqdns.is_empty()
    }
}

fn records(
    function: &'static str,
    field: &str,
    raw: Option<RecordsInfo>,
    t: &Target,
) -> Result<Records, DnsFnError> {
    let Some(raw) = raw else {
        return Ok(Records::default());
    };
    let mut out = Records::default();
    for (i, fqdn) in raw.dns_info.unwrap_or_default().0.iter().enumerate() {
        let f = format!("{field}.dns_info[{i}]");
        let name = names::validate(&f, fqdn).map_err(|e| DnsFnError::dns(function, e.into()))?;
        t.with_ptr
            .forward_zone(&f, &name)
            .map_err(|e| DnsFnError::dns(function, e))?;
        if !out.fqdns.contains(&name) {
            out.fqdns.push(name);
        }
    }
    let ips = raw.ips.unwrap_or_default();
    for (key, list, v4) in [("v4_ips", ips.v4_ips, true), ("v6_ips", ips.v6_ips, false)] {
        for (i, text) in list.unwrap_or_default().iter().enumerate() {
            let f = format!("{field}.ips.{key}[{i}]");
            let ip: IpAddr = text.trim().parse().map_err(|_| {
                DnsFnError::general(function, &f, format!("'{text}' is not an IP address"))
            })?;
            if ip.is_ipv4() != v4 {
                return Err(DnsFnError::general(
                    function,
                    &f,
                    format!("'{text}' is not an IPv{} address", if v4 { 4 } else { 6 }),
                ));
            }
            out.ips.insert(ip);
        }
    }
    if !out.fqdns.is_empty() && out.ips.is_empty() {
        return Err(DnsFnError::general(
            function,
            format!("{field}.ips"),
            "fqdns are given but no v4_ips or v6_ips to point them at",
        ));
    }
    Ok(out)
}

fn parse<T: serde::de::DeserializeOwned>(
    function: &'static str,
    body: &[u8],
) -> Result<T, DnsFnError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DnsFnError::general(
            function,
            "body",
            "the function's arguments (a JSON object) are required",
        ));
    }
    serde_json::from_slice(body).map_err(|e| DnsFnError::general(function, "body", e.to_string()))
}

/// The gateway network holding `addr`, for reverse zones derived from the network.
async fn network_of(state: &AppState, caller: &Caller, addr: IpAddr) -> Option<IpNet> {
    let nets = state.ipam.network_snapshot(caller).await.ok()?;
    nets.iter()
        .map(|n| n.info.cidr)
        .filter(|c| c.contains(&addr))
        .max_by_key(IpNet::prefix_len)
}

#[derive(Deserialize)]
struct OnlyAuth {
    #[serde(default)]
    auth_params: AuthParams,
}

async fn test_login(
    caller: Caller,
    targets: Targets,
    body: Bytes,
) -> Result<Json<Value>, DnsFnError> {
    const F: &str = "TestLogin";
    let a: OnlyAuth = parse(F, &body)?;
    check_backend(F, &a.auth_params, &caller)?;
    target(F, &targets, &caller)?;
    Ok(Json(json!(true)))
}

async fn get_available_domains(
    caller: Caller,
    targets: Targets,
    body: Bytes,
) -> Result<Json<Value>, DnsFnError> {
    const F: &str = "GetAvailableDomains";
    let a: OnlyAuth = parse(F, &body)?;
    check_backend(F, &a.auth_params, &caller)?;
    let t = target(F, &targets, &caller)?;
    Ok(Json(json!(t.with_ptr.settings().forward_zones)))
}

#[derive(Deserialize)]
struct CreateOrUpdate {
    #[serde(default)]
    new_records_info: Option<RecordsInfo>,
    #[serde(default)]
    old_records_info: Option<RecordsInfo>,
    #[serde(default)]
    auth_params: AuthParams,
}

/// One DNS change, planned before any is sent.
enum Step {
    Add { name: String, ip: IpAddr, ptr: bool },
    Delete { name: String, ip: IpAddr },
}

/// The contract's diff rules (module docs), as a list of steps: deletes first, then adds.
fn plan(new: &Records, old: &Records) -> Vec<Step> {
    let mut deletes = Vec::new();
    let mut adds = Vec::new();
    for name in &old.fqdns {
        let kept = new.fqdns.contains(name);
        for ip in &old.ips {
            if !kept || !new.ips.contains(ip) {
                deletes.push(Step::Delete {
                    name: name.clone(),
                    ip: *ip,
                });
            }
        }
    }
    let first_changed = new.fqdns.first() != old.fqdns.first();
    for (i, name) in new.fqdns.iter().enumerate() {
        let existed = old.fqdns.contains(name);
        let ptr = i == 0;
        for ip in &new.ips {
            // A name that stays with an address that stays is left alone, but for the new first
            // fqdn taking over the PTR records from the old first one.
            if existed && old.ips.contains(ip) && !(ptr && first_changed) {
                continue;
            }
            adds.push(Step::Add {
                name: name.clone(),
                ip: *ip,
                ptr,
            });
        }
    }
    deletes.extend(adds);
    deletes
}

async fn run(
    function: &'static str,
    state: &AppState,
    caller: &Caller,
    t: &Target,
    steps: Vec<Step>,
) -> Result<(), DnsFnError> {
    for step in steps {
        let r = match step {
            Step::Add { name, ip, ptr } => {
                let net = network_of(state, caller, ip).await;
                let u = if ptr { &t.with_ptr } else { &t.names_only };
                u.add(&name, ip, net).await
            }
            Step::Delete { name, ip } => {
                let net = network_of(state, caller, ip).await;
                // RR-specific deletes: a PTR to this name is removed if there is one.
                t.with_ptr.delete(&name, ip, net).await
            }
        };
        r.map_err(|e| DnsFnError::dns(function, e))?;
    }
    Ok(())
}

async fn create_or_update_dns_records(
    State(state): State<AppState>,
    caller: Caller,
    targets: Targets,
    body: Bytes,
) -> Result<Json<Value>, DnsFnError> {
    const F: &str = "CreateOrUpdateDnsRecords";
    let a: CreateOrUpdate = parse(F, &body)?;
    check_backend(F, &a.auth_params, &caller)?;
    let t = target(F, &targets, &caller)?;
    let new = records(F, "new_records_info", a.new_records_info, t)?;
    let old = records(F, "old_records_info", a.old_records_info, t)?;
    let steps = if new.is_empty() {
        plan(&Records::default(), &old)
    } else if new == old {
        Vec::new()
    } else {
        plan(&new, &old)
    };
    run(F, &state, &caller, t, steps).await?;
    Ok(Json(json!(true)))
}

#[derive(Deserialize)]
struct Delete {
    #[serde(default)]
    records_info: Option<RecordsInfo>,
    #[serde(default)]
    auth_params: AuthParams,
}

async fn delete_dns_records(
    State(state): State<AppState>,
    caller: Caller,
    targets: Targets,
    body: Bytes,
) -> Result<Json<Value>, DnsFnError> {
    const F: &str = "DeleteDnsRecords";
    let a: Delete = parse(F, &body)?;
    check_backend(F, &a.auth_params, &caller)?;
    let t = target(F, &targets, &caller)?;
    let old = records(F, "records_info", a.records_info, t)?;
    run(F, &state, &caller, t, plan(&Records::default(), &old)).await?;
    Ok(Json(json!(true)))
}

async fn unknown_function(Path(function): Path<String>) -> DnsFnError {
    let known: Vec<&str> = FUNCTIONS.iter().map(|(_, p)| *p).collect();
    DnsFnError {
        function: "avi-dns",
        status: StatusCode::NOT_IMPLEMENTED,
        exception: NOT_IMPLEMENTED,
        message: format!(
            "no Avi DNS function '{function}' (known: {})",
            known.join(", ")
        ),
        field: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avi_clients_use_the_section_their_backend_names_else_the_only_one() {
        let base = r#"
            [clients.demo]
            password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0eDVEQ9XbOhdVpTvmUsnZdk1lBQ9hm0ONgDhkK6fwrY"
            backend = "local"
            [backends.local]
            kind = "embedded"
            [[backends.local.networks]]
            name = "n1"
            cidr = "10.0.0.0/24"
            [dns.lab]
            servers = ["127.0.0.1:5353"]
            key_name = "ipamgw-key"
            secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
            forward_zones = ["lab.example.com"]
        "#;
        let second = r#"
            [dns.corp]
            servers = ["127.0.0.1:5354"]
            key_name = "corp-key"
            secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
            forward_zones = ["corp.example.com"]
        "#;
        let name = |text: &str| {
            let s = Settings::from_toml(text).expect("config");
            attached_section(&s, "local").map(|d| d.name.clone())
        };
        // One section and no attachment: that one.
        assert_eq!(name(base).as_deref(), Some("lab"));
        // Two and no attachment: none (the functions answer NotImplemented).
        assert_eq!(name(&format!("{base}{second}")), None);
        // The backend names one: that one, whatever else exists.
        let attached = base.replace(
            "kind = \"embedded\"",
            "kind = \"embedded\"\n            dns = \"corp\"",
        );
        assert_eq!(
            name(&format!("{attached}{second}")).as_deref(),
            Some("corp")
        );
    }

    fn recs(fqdns: &[&str], ips: &[&str]) -> Records {
        Records {
            fqdns: fqdns.iter().map(|s| (*s).to_owned()).collect(),
            ips: ips.iter().map(|s| s.parse().expect("ip")).collect(),
        }
    }

    fn shown(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Add { name, ip, ptr } => {
                    format!("add {name} {ip}{}", if *ptr { " ptr" } else { "" })
                }
                Step::Delete { name, ip } => format!("del {name} {ip}"),
            })
            .collect()
    }

    #[test]
    fn the_diff_rules_of_the_contract() {
        let old = recs(&["a.x", "b.x"], &["10.0.0.1", "2001:db8::1"]);
        // old empty → create every fqdn, the first with PTRs
        assert_eq!(
            shown(&plan(&old, &Records::default())),
            [
                "add a.x 10.0.0.1 ptr",
                "add a.x 2001:db8::1 ptr",
                "add b.x 10.0.0.1",
                "add b.x 2001:db8::1"
            ]
        );
        // new empty → delete every fqdn of old
        assert_eq!(
            shown(&plan(&Records::default(), &old)),
            [
                "del a.x 10.0.0.1",
                "del a.x 2001:db8::1",
                "del b.x 10.0.0.1",
                "del b.x 2001:db8::1"
            ]
        );
        // an address changed: only it moves
        let new = recs(&["a.x", "b.x"], &["10.0.0.2", "2001:db8::1"]);
        assert_eq!(
            shown(&plan(&new, &old)),
            [
                "del a.x 10.0.0.1",
                "del b.x 10.0.0.1",
                "add a.x 10.0.0.2 ptr",
                "add b.x 10.0.0.2"
            ]
        );
        // an fqdn dropped, one added
        let new = recs(&["a.x", "c.x"], &["10.0.0.1", "2001:db8::1"]);
        assert_eq!(
            shown(&plan(&new, &old)),
            [
                "del b.x 10.0.0.1",
                "del b.x 2001:db8::1",
                "add c.x 10.0.0.1",
                "add c.x 2001:db8::1"
            ]
        );
        // the first fqdn dropped: the new first one takes the PTRs
        let new = recs(&["b.x"], &["10.0.0.1", "2001:db8::1"]);
        assert_eq!(
            shown(&plan(&new, &old)),
            [
                "del a.x 10.0.0.1",
                "del a.x 2001:db8::1",
                "add b.x 10.0.0.1 ptr",
                "add b.x 2001:db8::1 ptr"
            ]
        );
    }

    #[test]
    fn dns_info_keeps_the_fqdns_in_the_order_given() {
        let r: RecordsInfo =
            serde_json::from_str(r#"{"dns_info": {"z.x": {}, "a.x": {"ttl": 30}}}"#).expect("json");
        assert_eq!(r.dns_info.expect("dns_info").0, ["z.x", "a.x"]);
    }
}
