//! Set-up errors that make every allocation fail (issue 11, point 3) fail `ipam-gateway check`
//! (exit 3), vRA's validate-endpoint and Avi's TestLogin with one sentence naming what is missing
//! and where to create it — on the phpIPAM and Infoblox fakes, which answer such set-ups as the
//! real systems do. Each failing set-up is also shown to really break an allocation, so the check
//! predicts production instead of guessing; a correct set-up still passes everywhere.

use ipam_gateway::backends::phpipam::PhpipamBackend;
use ipam_gateway::backends::{Backend, CallContext};
use ipam_gateway::config::{BackendSettings, Settings};
use ipam_gateway::domain::{AllocateIn, IpamError, Owner, RecordDetails};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::avi_common::{call, exception, message};
use crate::support::gateway_process::run_check;
use crate::support::infoblox::{self as ib, InfobloxMock};
use crate::support::infoblox_fake::FakeWapi;
use crate::support::phpipam::{self as php, PhpipamMock};
use crate::support::phpipam_fake::FakePhpipam;
use crate::support::{AppOptions, TestApp, spawn_with};
use crate::vra_common::{error_of, fixture, vra};

async fn app_on(config: String) -> TestApp {
    spawn_with(AppOptions {
        config,
        tls: false,
        metrics: false,
    })
    .await
}

/// vRA's validate-endpoint on the app's backend: status and body.
async fn validate(app: &TestApp) -> (StatusCode, Value) {
    let mut inputs = fixture("validate-endpoint");
    let host = app.base_url.split("://").nth(1).expect("scheme").to_owned();
    inputs["endpointProperties"]["hostName"] = json!(host);
    vra(app, "validate-endpoint", &inputs).await
}

/// The sentence every consumer must show: `backend ipam is not set up for the gateway: …`.
fn setup_sentence(check_output: &str) -> String {
    let at = check_output
        .find("backend ipam is not set up for the gateway: ")
        .unwrap_or_else(|| panic!("no set-up sentence in: {check_output}"));
    check_output[at..]
        .lines()
        .next()
        .expect("a line")
        .to_owned()
}

/// `check` exits 3 with the sentence; vRA validate-endpoint and Avi TestLogin fail with the same
/// one. Returns the sentence.
async fn assert_fails_everywhere(config: &str, wanted: &[&str]) -> String {
    let (code, text) = run_check(config).await;
    assert_eq!(code, Some(3), "check must fail: {text}");
    assert!(
        text.contains("backend ipam (") && text.contains("): FAILED: "),
        "{text}"
    );
    let sentence = setup_sentence(&text);
    for w in wanted {
        assert!(sentence.contains(w), "'{w}' missing from: {sentence}");
    }

    let app = app_on(config.to_owned()).await;
    let (status, body) = validate(&app).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    let (vra_message, _) = error_of(&body);
    assert!(
        vra_message.contains(&sentence),
        "vRA: {vra_message}\nwant: {sentence}"
    );
    assert_eq!(body["error"]["code"], "not_set_up", "{body}");

    let (status, body) = call(&app, "test-login", json!({"auth_params": {}})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        message(&body).contains(&sentence),
        "Avi: {body}\nwant: {sentence}"
    );
    assert_eq!(exception(&body), "CustomIpamGeneralException", "{body}");
    app.stop().await;
    sentence
}

fn alloc(owner: &str, network: &str) -> AllocateIn {
    AllocateIn {
        network: network.into(),
        owner: Owner::parse(owner).expect("owner"),
        address: None,
        details: RecordDetails {
            aliases: Vec::new(),
            hostname: Some(format!("{owner}.lab.example.com")),
            description: None,
            mac: None,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// phpIPAM

fn php_config(url: &str, extra: &str) -> String {
    php::config(
        url,
        &format!(
            "username = \"{}\"\npassword = \"{}\"\n{extra}",
            php::USER,
            php::PASSWORD
        ),
    )
}

fn php_backend(config: &str) -> PhpipamBackend {
    let s = Settings::from_toml(config).expect("config");
    let BackendSettings::Phpipam { name, settings } = &s.backends[0] else {
        panic!("phpipam backend expected");
    };
    PhpipamBackend::new(name, settings).expect("backend builds")
}

#[tokio::test]
async fn phpipam_a_correct_setup_passes_check_validate_and_test_login() {
    let fake = FakePhpipam::start().await;
    // A custom owner field that exists (fixture 44's custom_vm_id) and the selector field of
    // fixture 43: both are looked up, both found.
    let config = php_config(&fake.url, "owner_field = \"custom_vm_id\"");
    let (code, text) = run_check(&config).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("reachable, authenticated, 3 subnet(s) exposed, 1 block(s)"),
        "{text}"
    );
    assert!(
        !text.contains("not checked"),
        "all of it was checked: {text}"
    );
    let before = fake.with(|s| (s.addresses.len(), s.subnets.len(), s.logins));

    let app = app_on(config).await;
    let (status, body) = validate(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Validated successfully") && !m.contains("not checked")),
        "{body}"
    );
    let ok = call(&app, "test-login", json!({"auth_params": {}})).await;
    assert_eq!(ok, (StatusCode::OK, json!(true)));
    app.stop().await;
    // The write probe changed nothing.
    let after = fake.with(|s| (s.addresses.len(), s.subnets.len()));
    assert_eq!(after, (before.0, before.1));
}

#[tokio::test]
async fn phpipam_a_missing_owner_custom_field_fails_everywhere_and_really_breaks_allocation() {
    let fake = FakePhpipam::start().await;
    let config = php_config(&fake.url, "owner_field = \"custom_owner\"");
    assert_fails_everywhere(
        &config,
        &[
            "'custom_owner' (owner_field) does not exist",
            "Invalid request key custom_owner",
            "Administration → Custom fields → IP addresses",
            "name 'owner'",
        ],
    )
    .await;
    // What the check predicts: phpIPAM refuses every allocation.
    let err = php_backend(&config)
        .allocate(&CallContext::default(), &alloc("vm-1", "7"))
        .await
        .expect_err("phpIPAM refuses the unknown key");
    assert!(
        err.to_string().contains("Invalid request key custom_owner"),
        "{err}"
    );
    assert!(fake.addresses_in(7).iter().all(|a| a.owner.is_none()));
}

#[tokio::test]
async fn phpipam_an_owner_field_on_a_phpipam_without_custom_fields_fails_the_check() {
    // phpIPAM answers 404 "No custom fields defined" when a table has none.
    let fake = FakePhpipam::start().await;
    fake.with(|s| s.address_fields.clear());
    let config = php_config(&fake.url, "owner_field = \"custom_vm_id\"");
    let (code, text) = run_check(&config).await;
    assert_eq!(code, Some(3), "{text}");
    assert!(
        setup_sentence(&text).contains("'custom_vm_id' (owner_field) does not exist"),
        "{text}"
    );
}

#[tokio::test]
async fn phpipam_a_missing_subnet_selector_field_fails_everywhere() {
    let fake = FakePhpipam::start().await;
    let config = php_config(&fake.url, "").replace(
        "field = \"custom_vRA_Range\"",
        "field = \"custom_vRA_Rnage\"",
    );
    let sentence = assert_fails_everywhere(
        &config,
        &[
            "'custom_vRA_Rnage' (networks.field) does not exist",
            "Administration → Custom fields → Subnets",
            "name 'vRA_Rnage'",
        ],
    )
    .await;
    assert!(!sentence.contains("owner_field"), "{sentence}");
}

#[tokio::test]
async fn phpipam_missing_dns_fields_are_a_warning_not_a_failure() {
    let fake = FakePhpipam::start().await;
    let config = php_config(&fake.url, "dns_domain_field = \"custom_dnsDomain\"");
    let (code, text) = run_check(&config).await;
    assert_eq!(code, Some(0), "only read, so allocations work: {text}");
    assert!(
        text.contains(
            "WARNING: subnet custom field 'custom_dnsDomain' (dns_domain_field) does not exist"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn phpipam_a_read_only_api_app_fails_everywhere_without_writing_or_logging_in_again() {
    let fake = FakePhpipam::start().await;
    let config =
        php_config(&fake.url, "").replace("app_id = \"gateway\"", "app_id = \"gatewayro\"");
    let before = fake.with(|s| (s.addresses.len(), s.subnets.len()));
    assert_fails_everywhere(
        &config,
        &[
            "API app 'gatewayro' may only read",
            "401 'invalid permissions'",
            "Administration → API",
            "'Read / Write'",
        ],
    )
    .await;
    assert_eq!(
        fake.with(|s| (s.addresses.len(), s.subnets.len())),
        before,
        "the probe wrote nothing"
    );
    // What the check predicts: the allocation is refused, and as a permission problem, not as
    // a bad token (no second login).
    let b = php_backend(&config);
    let logins = fake.logins();
    let err = b
        .allocate(&CallContext::default(), &alloc("vm-1", "7"))
        .await
        .expect_err("read-only app");
    assert!(
        matches!(&err, IpamError::Upstream { status: 401, detail, .. } if detail.contains("invalid permissions")),
        "{err:?}"
    );
    assert_eq!(
        fake.logins() - logins,
        1,
        "one login, no re-login for a permission refusal"
    );
}

#[tokio::test]
async fn phpipam_answers_the_check_cannot_read_are_reported_as_not_checked() {
    // wiremock answers only the inventory; the custom field listing and the write probe get
    // 404s that are not phpIPAM's: not a failure, but said.
    let m = PhpipamMock::start().await;
    m.login().mount().await;
    m.sections_list().mount().await;
    m.section_subnets().mount().await;
    let status = php_backend(&php_config(&m.uri(), "owner_field = \"custom_vm_id\""))
        .check(&CallContext::default())
        .await
        .expect("check");
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    assert_eq!(
        status.unchecked,
        [
            "the addresses custom fields: phpIPAM answered 404 (empty or non-JSON answer) to GET \
             addresses/custom_fields/",
            "the subnets custom fields: phpIPAM answered 404 (empty or non-JSON answer) to GET \
             subnets/custom_fields/",
            "whether the API app 'gateway' may write: phpIPAM answered 404 (empty or non-JSON \
             answer) to a write that changes nothing (PATCH addresses/0/)",
        ]
    );
    let probe = m
        .requests()
        .await
        .into_iter()
        .find(|r| r.method.as_str() == "PATCH")
        .expect("the probe");
    assert_eq!(probe.url.path(), "/api/gateway/addresses/0/");
    assert_eq!(
        probe.body, b"{}",
        "an empty body changes nothing (fixture 79)"
    );

    // The same through `check`: exit 0, the "not checked" lines printed.
    let (code, text) = run_check(&php_config(&m.uri(), "owner_field = \"custom_vm_id\"")).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("backend ipam: not checked: whether the API app"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Infoblox

#[tokio::test]
async fn infoblox_a_correct_setup_passes_and_says_what_it_could_not_check() {
    let fake = FakeWapi::start().await;
    let config = ib::config(&fake.url, "");
    let (code, text) = run_check(&config).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("reachable, authenticated, 4 network(s) exposed"),
        "{text}"
    );
    assert!(!text.contains("WARNING"), "{text}");
    assert!(
        text.contains("backend ipam: not checked: whether the grid user may create records"),
        "{text}"
    );
    let app = app_on(config).await;
    let (status, body) = validate(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let m = body["message"].as_str().expect("message");
    assert!(m.starts_with("Validated successfully"), "{m}");
    assert!(
        m.contains("not checked: whether the grid user may create records"),
        "{m}"
    );
    let ok = call(&app, "test-login", json!({"auth_params": {}})).await;
    assert_eq!(ok, (StatusCode::OK, json!(true)));
    app.stop().await;
}

#[tokio::test]
async fn infoblox_an_undefined_owner_ea_fails_everywhere_and_really_breaks_allocation() {
    let fake = FakeWapi::start().await;
    let config = ib::config(&fake.url, "owner_ea = \"vm-owner\"");
    assert_fails_everywhere(
        &config,
        &[
            "'vm-owner' (owner_ea) is not defined on the grid",
            "Unknown extensible attribute: vm-owner",
            "Grid → Administration → Extensible Attributes",
            "type String",
        ],
    )
    .await;
    let err = ib::backend(&fake.url, "owner_ea = \"vm-owner\"")
        .allocate(
            &CallContext::default(),
            &alloc("vm-1", "default/10.20.0.0/24"),
        )
        .await
        .expect_err("the grid refuses the unknown EA");
    assert!(
        err.to_string()
            .contains("Unknown extensible attribute: vm-owner"),
        "{err}"
    );
    // Defined, the same config passes.
    fake.with(|s| s.add_ea("vm-owner"));
    let (code, text) = run_check(&config).await;
    assert_eq!(code, Some(0), "{text}");
}

#[tokio::test]
async fn infoblox_an_undefined_filter_ea_fails_the_check_though_nothing_can_be_listed() {
    let fake = FakeWapi::start().await;
    fake.with(|s| s.eas.remove("vRA-Enabled"));
    let config = ib::config(&fake.url, "");
    let sentence = assert_fails_everywhere(
        &config,
        &[
            "'vRA-Enabled' (network_filter) is not defined on the grid",
            "no network can be listed",
            "Grid → Administration → Extensible Attributes",
        ],
    )
    .await;
    assert!(!sentence.contains("owner_ea"), "{sentence}");
    // The listing itself fails as the check says.
    let err = ib::backend(&fake.url, "")
        .networks(&CallContext::default())
        .await
        .expect_err("listing refused");
    assert!(
        err.to_string()
            .contains("Unknown extensible attribute: vRA-Enabled"),
        "{err}"
    );
}

#[tokio::test]
async fn infoblox_an_undefined_block_filter_ea_fails_the_check() {
    let fake = FakeWapi::start().await;
    let config = ib::config(&fake.url, "")
        .replace("blocks = [\"10.100.0.0/16\"]", "")
        .replace(
            "[backends.ipam.network_filter]",
            "[backends.ipam.block_filter]\n\"Blok\" = \"on-demand\"\n[backends.ipam.network_filter]",
        );
    let (code, text) = run_check(&config).await;
    assert_eq!(code, Some(3), "{text}");
    assert!(
        setup_sentence(&text).contains("'Blok' (block_filter) is not defined on the grid"),
        "{text}"
    );
}

#[tokio::test]
async fn infoblox_undefined_read_only_eas_are_a_warning_not_a_failure() {
    let fake = FakeWapi::start().await;
    let (code, text) = run_check(&ib::config(&fake.url, "gateway_ea = \"GW\"")).await;
    assert_eq!(code, Some(0), "only read, so allocations work: {text}");
    assert!(
        text.contains("WARNING: extensible attribute 'GW' (gateway_ea) is not defined on the grid"),
        "{text}"
    );
}

#[tokio::test]
async fn infoblox_the_ea_search_is_the_one_the_fixtures_show() {
    // Fixture 31 (defined) and 32 (undefined) as wiremock answers: the gateway's requests match
    // them exactly, and an unanswered definition search is "not checked", not a failure.
    let m = InfobloxMock::start().await;
    m.inventory().await;
    m.network_views().with_cookie().mount().await;
    m.ea_definition()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    m.ea_definition_undefined()
        .with_cookie()
        .mounted()
        .expect(1)
        .mount()
        .await;
    let status = ib::backend(&m.uri(), "owner_ea = \"VM Name\"")
        .check(&CallContext::default())
        .await
        .expect("check");
    assert_eq!(status.problems.len(), 1, "{:?}", status.problems);
    assert!(
        status.problems[0].contains("'VM Name' (owner_ea)"),
        "{:?}",
        status.problems
    );
    let unread: Vec<&String> = status
        .unchecked
        .iter()
        .filter(|u| u.starts_with("whether the extensible attribute"))
        .collect();
    assert_eq!(
        unread.len(),
        3,
        "vRA-Enabled, Gateway, VLAN: {:?}",
        status.unchecked
    );
    assert!(unread[0].contains("the grid answered 404"), "{unread:?}");
    let e = status.setup_error().expect("a set-up error");
    assert!(
        matches!(&e, IpamError::NotSetUp { backend, .. } if backend == "ipam"),
        "{e:?}"
    );

    let status = ib::backend(&m.uri(), "owner_ea = \"ipamgw-owner\"")
        .check(&CallContext::default())
        .await
        .expect("check");
    assert!(status.problems.is_empty(), "{:?}", status.problems);
    assert!(status.setup_error().is_none());
}
