//! Bounded fuzzing with proptest: the vRA and Avi request parsers (directly and through the HTTP
//! endpoints, with arbitrary JSON and arbitrary bytes) and the phpIPAM and Infoblox response
//! parsers. Nothing panics; every error names a field. 256 cases per property keeps `cargo test`
//! fast; `PROPTEST_CASES=10000 cargo test --test api fuzz` runs longer.

use std::net::IpAddr;

use ipam_gateway::backends::infoblox::wire as ib;
use ipam_gateway::backends::phpipam::wire as php;
use ipam_gateway::contracts::avi::dto as avi;
use ipam_gateway::contracts::input::Field;
use ipam_gateway::contracts::vra::dto as vra;
use ipam_gateway::domain::IpamError;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

use crate::support::{DEMO_PASSWORD, spawn_app};

/// Field names the parsers look for (vRA inputs, Avi arguments, phpIPAM and WAPI objects), so
/// generated objects reach past the first lookup; arbitrary names besides.
const KEYS: &[&str] = &[
    // vRA
    "endpoint",
    "endpointProperties",
    "hostName",
    "pagingAndSorting",
    "maxResults",
    "pageToken",
    "resourceInfo",
    "id",
    "name",
    "owner",
    "ipAllocations",
    "ipRangeIds",
    "ipRangeId",
    "ipBlockIds",
    "nicIndex",
    "isPrimary",
    "size",
    "start",
    "properties",
    "ipAddress",
    "ipAddresses",
    "ipDeallocations",
    "addressInfos",
    "macAddress",
    "ipRange",
    "ipRangeDeallocations",
    // Avi
    "record_info",
    "new_record_info",
    "old_record_info",
    "fqdns",
    "allocation_type",
    "preferred_ip",
    "preferred_ip6",
    "nw_and_subnet_list",
    "network",
    "v4_subnet",
    "v6_subnet",
    "auth_params",
    "ip_type",
    // phpIPAM
    "code",
    "success",
    "message",
    "data",
    "subnet",
    "mask",
    "sectionId",
    "masterSubnetId",
    "vlanId",
    "isFolder",
    "isPool",
    "gatewayId",
    "nameservers",
    "usage",
    "freehosts",
    "ip",
    "hostname",
    "mac",
    "description",
    "number",
    "token",
    "custom_fields",
    // WAPI
    "_ref",
    "network_view",
    "comment",
    "extattrs",
    "options",
    "value",
    "num",
    "use_option",
    "network_container",
    "domain_name",
    "ipv4addrs",
    "ipv6addrs",
    "ipv4addr",
    "ipv6addr",
    "ip_address",
    "status",
    "types",
    "objects",
    "result",
    "next_page_id",
    "Error",
    "text",
];

/// Strings that are almost valid somewhere.
const TEXTS: &[&str] = &[
    "",
    " ",
    "0",
    "1",
    "-1",
    "true",
    "false",
    "null",
    "18446744073709551616",
    "10.20.0.0/24",
    "10.20.0.5",
    "10.20.0.0/33",
    "2001:db8::/64",
    "2001:db8::1",
    "::",
    "256.1.1.1",
    "V4_ONLY",
    "V6_ONLY",
    "V4_V6",
    "local.ZGVmYXVsdC8xMC4yMC4wLjAvMjQ",
    "local.ZGVmYXVsdC8xMC4yMC4wLjAvMjQ~10.20.0.9",
    "network/ZG5zLm5ldHdvcmskMTAuMC4wLjAvMjQvMA:10.0.0.0/24/default",
    "record:host/abc:vm.example.com/default",
    "vm-1.lab.example.com",
    "00:50:56:aa:bb:cc",
    "[\"a\", 1]",
    "{\"k\": \"v\"}",
    "ünïcødé ✓",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(TEXTS).prop_map(str::to_owned),
        "\\PC{0,16}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z_]{0,10}",
    ]
}

/// Any JSON value, biased towards the shapes the parsers read.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (0u32..300).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..7)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object, as the endpoints and most parsers expect at the top.
fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), json_value()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..Config::default()
    })
}

fn field_of(e: &IpamError) -> Option<&str> {
    match e {
        IpamError::InvalidInput { field, .. } => Some(field),
        _ => None,
    }
}

/// An error from reading `path` must be an invalid-input error naming `path` or a field under it.
fn check_named(r: Result<(), IpamError>, path: &str) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        let field = field_of(&e).ok_or_else(|| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert!(!field.is_empty(), "empty field in {e:?}");
        prop_assert!(
            field.starts_with(path) || field == "body",
            "error for {path} names {field}: {e:?}"
        );
    }
    Ok(())
}

#[test]
fn vra_input_readers_never_panic_and_name_the_field() {
    runner()
        .run(&json_value(), |v| {
            let root = match Field::root(&v) {
                Ok(root) => root,
                Err(e) => {
                    prop_assert!(!v.is_object());
                    prop_assert_eq!(field_of(&e), Some("body"));
                    return Ok(());
                }
            };
            let _ = vra::endpoint(&root).get("hostName").opt_str();
            check_named(
                root.get("resourceInfo").get("id").req_str().map(drop),
                "resourceInfo.id",
            )?;
            check_named(
                root.get("pagingAndSorting")
                    .get("maxResults")
                    .opt_u64()
                    .map(drop),
                "pagingAndSorting.maxResults",
            )?;
            check_named(root.get("ipBlockIds").str_list().map(drop), "ipBlockIds")?;
            let items = root.get("ipAllocations").items();
            check_named(
                items.as_ref().map(drop).map_err(Clone::clone),
                "ipAllocations",
            )?;
            for item in items.unwrap_or_default() {
                let p = item.path().to_owned();
                prop_assert!(p.starts_with("ipAllocations["), "{}", p);
                check_named(item.get("ipRangeIds").str_list().map(drop), &p)?;
                check_named(item.get("nicIndex").opt_u64().map(drop), &p)?;
                check_named(item.get("isPrimary").opt_bool().map(drop), &p)?;
                check_named(item.get("size").opt_u64().map(drop), &p)?;
                check_named(item.get("properties").str_map().map(drop), &p)?;
                check_named(item.get("start").opt_str().map(drop), &p)?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn avi_record_info_reader_never_panics_and_names_the_field() {
    let strategy = prop_oneof![
        json_value(),
        json_object().prop_map(|o| json!({ "record_info": o })),
        json_value().prop_map(|o| json!({ "record_info": o })),
    ];
    runner()
        .run(&strategy, |v| {
            if let Err(e) = avi::record_info(&v, "record_info") {
                let field = field_of(&e).ok_or_else(|| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert!(
                    field.starts_with("record_info") || field == "body",
                    "{:?}",
                    e
                );
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

const ENDPOINTS: &[&str] = &[
    "/vra/v1/validate-endpoint",
    "/vra/v1/get-ip-ranges",
    "/vra/v1/get-ip-blocks",
    "/vra/v1/allocate-ip",
    "/vra/v1/deallocate-ip",
    "/vra/v1/update-record",
    "/vra/v1/allocate-ip-range",
    "/vra/v1/deallocate-ip-range",
    "/avi/v1/test-login",
    "/avi/v1/get-available-networks-and-subnets",
    "/avi/v1/get-ipam-record",
    "/avi/v1/create-ipam-record",
    "/avi/v1/delete-ipam-record",
    "/avi/v1/update-ipam-record",
];

/// Arbitrary bodies (bytes, JSON values, objects with the contracts' field names, the fields
/// nested under `record_info`) at every vRA and Avi endpoint of a running gateway: never a 500,
/// and every 400 names the field.
#[test]
fn contract_endpoints_answer_arbitrary_bodies_without_panicking() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = rt.block_on(spawn_app());
    let body = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..200),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        4 => json_object().prop_map(|v| v.to_string().into_bytes()),
        2 => json_object().prop_map(|v| json!({"record_info": v, "new_record_info": v,
            "old_record_info": v}).to_string().into_bytes()),
    ];
    let strategy = (prop::sample::select(ENDPOINTS), body);
    let named_400s = std::cell::Cell::new(0u32);
    runner()
        .run(&strategy, |(path, body)| {
            let (status, text) = rt.block_on(async {
                let r = app
                    .client
                    .post(app.url(path))
                    .basic_auth("demo", Some(DEMO_PASSWORD))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("the gateway answers");
                (r.status(), r.text().await.expect("body"))
            });
            prop_assert!(
                status.as_u16() != 500,
                "{path} → 500 for {}: {text}",
                String::from_utf8_lossy(&body)
            );
            prop_assert!(status.as_u16() < 502, "{path} → {status}: {text}");
            if status == 400 {
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| TestCaseError::fail(format!("{path}: {e}: {text}")))?;
                let field = v["error"]["field"].as_str().unwrap_or_default();
                prop_assert!(!field.is_empty(), "{path}: 400 without a field: {text}");
                named_400s.set(named_400s.get() + 1);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        named_400s.get() >= 10,
        "the bodies reached the parsers: {} answers were 400 naming a field",
        named_400s.get()
    );
    rt.block_on(app.stop());
}

/// `Err` names the object or a field inside it; at the object itself only for a wrong type or a
/// missing field (which the message names).
fn check_wire<T>(
    r: Result<T, php::WireError>,
    object: &str,
    input: &Value,
) -> Result<Option<T>, TestCaseError> {
    match r {
        Ok(t) => Ok(Some(t)),
        Err(e) => {
            prop_assert!(e.field.starts_with(object), "{:?}", e);
            if e.field == object && input.is_object() {
                prop_assert!(
                    e.message.contains("missing field `"),
                    "{:?} for {}",
                    e,
                    input
                );
            }
            if let Some(rest) = e.field.strip_prefix(&format!("{object}.")) {
                let first = rest.split(['.', '[']).next().unwrap_or_default();
                let known = input.as_object().is_some_and(|o| o.contains_key(first));
                prop_assert!(
                    known || first.is_empty(),
                    "{:?} names no input field of {}",
                    e,
                    input
                );
            }
            Ok(None)
        }
    }
}

const PROBE_IPS: &[&str] = &["10.0.0.1", "10.20.0.5", "2001:db8::1", "::"];

#[test]
fn phpipam_response_parsers_never_panic_and_name_the_field() {
    let strategy = prop_oneof![json_value(), json_object()];
    runner()
        .run(&strategy, |v| {
            for x in [&v]
                .into_iter()
                .chain(v.as_object().into_iter().flat_map(|o| o.values()))
            {
                let _ = (php::value_u64(x), php::value_count(x), php::value_text(x));
                let _ = php::value_flag(x);
            }
            let _ = serde_json::from_slice::<php::Envelope>(v.to_string().as_bytes());
            let _ = php::list(Some(v.clone()));
            if let Some(s) = check_wire(php::Subnet::from_value(v.clone()), "subnet", &v)? {
                let _ = (
                    s.cidr(),
                    s.dns_servers(),
                    s.free_hosts(),
                    s.field("custom_x"),
                );
            }
            if let Some(a) = check_wire(php::Address::from_value(v.clone()), "address", &v)? {
                let _ = (a.addr(), a.text_field("hostname"));
            }
            check_wire(
                php::parse::<php::Section>("section", v.clone()),
                "section",
                &v,
            )?;
            check_wire(php::parse::<php::Vlan>("vlan", v.clone()), "vlan", &v)?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // Arbitrary bytes as a whole answer: the envelope reader never panics.
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..256), |bytes| {
            let _ = serde_json::from_slice::<php::Envelope>(&bytes);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn infoblox_response_parsers_never_panic_and_name_the_field() {
    let strategy = prop_oneof![json_value(), json_object()];
    let ips: Vec<IpAddr> = PROBE_IPS.iter().map(|s| s.parse().expect("ip")).collect();
    runner()
        .run(&strategy, |v| {
            let _ = ib::ea_text(&v);
            if let Some(s) = v.as_str() {
                let _ = ib::object_type(s);
            }
            if let Some(p) = check_wire(ib::parse::<ib::Page>("page", v.clone()), "page", &v)? {
                let _ = p.next();
            }
            check_wire(ib::parse::<ib::WapiError>("error", v.clone()), "error", &v)?;
            if let Some(n) = check_wire(
                ib::parse::<ib::Network>("network", v.clone()),
                "network",
                &v,
            )? {
                let _ = (n.cidr(), n.option(&["routers", "domain-name"]));
            }
            if let Some(r) = check_wire(ib::parse::<ib::Record>("record", v.clone()), "record", &v)?
            {
                let _ = (r.object_type(), r.addresses());
                for ip in &ips {
                    let _ = r.host_address(*ip).map(ib::HostAddress::addr);
                }
            }
            if let Some(e) = check_wire(
                ib::parse::<ib::IpAddressEntry>("ipv4address", v.clone()),
                "ipv4address",
                &v,
            )? {
                let _ = (e.addr(), e.is_held());
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
