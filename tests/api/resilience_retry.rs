//! Bounded, jittered retries of reads (`GET`) in the phpIPAM and Infoblox clients, and no blind
//! retry of writes: an allocation whose answer is a 503 is sent exactly once (a resend could take
//! a second address; the service recovers lost answers through the owner lookup instead).

use std::time::Duration;

use ipam_gateway::backends::retry::{ATTEMPTS, JITTER_MAX};
use ipam_gateway::backends::{Backend, CallContext};
use ipam_gateway::domain::{AllocateIn, IpamError, Owner, RecordDetails};
use wiremock::ResponseTemplate;

use crate::support::infoblox::InfobloxMock;
use crate::support::phpipam::{PhpipamMock, TOKEN};

const API: &str = "/api/gateway";
const WAPI: &str = "/wapi/v2.12";

fn html(status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(
        format!("<html><head><title>{status} Service Unavailable</title></head></html>"),
        "text/html",
    )
}

fn alloc(net: &str) -> AllocateIn {
    AllocateIn {
        network: net.into(),
        owner: Owner::parse("vra:vm-retry/nic0").expect("owner"),
        address: None,
        details: RecordDetails {
            aliases: Vec::new(),
            hostname: Some("vm-retry.lab.example.com".into()),
            description: None,
            mac: None,
        },
    }
}

/// Login, sections and the Gateway section's subnets, each expected exactly `sections` /
/// once (login).
async fn phpipam_inventory(m: &PhpipamMock, sections: u64) {
    m.login().mounted().expect(1).mount().await;
    m.sections_list()
        .token(TOKEN)
        .mounted()
        .expect(sections)
        .mount()
        .await;
    m.section_subnets().mount().await;
}

#[tokio::test]
async fn phpipam_a_flaky_read_succeeds_after_one_503() {
    for status in [502, 503, 504] {
        let m = PhpipamMock::start().await;
        m.respond("GET", &format!("{API}/sections/"), html(status))
            .mounted()
            .times(1)
            .expect(1)
            .priority(1)
            .mount()
            .await;
        phpipam_inventory(&m, 1).await;
        let b = crate::support::phpipam::backend(&m.uri(), "");
        let status_ok = b.check(&CallContext::default()).await;
        let s = status_ok.unwrap_or_else(|e| panic!("after one {status}: {e:?}"));
        assert_eq!(s.networks, 3, "{s:?}");
    }
}

#[tokio::test]
async fn phpipam_reads_give_up_after_the_bounded_attempts() {
    let m = PhpipamMock::start().await;
    m.login().mounted().expect(1).mount().await;
    m.respond("GET", &format!("{API}/sections/"), html(503))
        .mounted()
        .expect(u64::from(ATTEMPTS))
        .mount()
        .await;
    let b = crate::support::phpipam::backend(&m.uri(), "");
    let t = std::time::Instant::now();
    let e = b
        .check(&CallContext::default())
        .await
        .expect_err("503 every time");
    // Two pauses of at most JITTER_MAX each, plus slack: the retries are bounded.
    assert!(
        t.elapsed() < 2 * JITTER_MAX + Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    assert!(
        matches!(&e, IpamError::Unavailable { backend, detail } if backend == "ipam" && detail.contains("503")),
        "{e:?}"
    );
}

#[tokio::test]
async fn phpipam_a_500_read_is_not_retried() {
    let m = PhpipamMock::start().await;
    m.login().mounted().expect(1).mount().await;
    m.respond("GET", &format!("{API}/sections/"), html(500))
        .mounted()
        .expect(1)
        .mount()
        .await;
    let b = crate::support::phpipam::backend(&m.uri(), "");
    let e = b.check(&CallContext::default()).await.expect_err("500");
    assert!(
        matches!(&e, IpamError::Upstream { status: 500, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn phpipam_an_allocation_that_fails_with_503_is_not_resent() {
    for status in [502, 503, 504] {
        let m = PhpipamMock::start().await;
        phpipam_inventory(&m, 1).await;
        m.respond(
            "POST",
            &format!("{API}/addresses/first_free/7/"),
            html(status),
        )
        .mounted()
        .expect(1)
        .mount()
        .await;
        let b = crate::support::phpipam::backend(&m.uri(), "");
        let e = b
            .allocate(&CallContext::default(), &alloc("7"))
            .await
            .expect_err("the allocation fails");
        assert!(
            matches!(
                &e,
                IpamError::Unavailable { .. } | IpamError::Upstream { .. }
            ),
            "{status}: {e:?}"
        );
        // wiremock checks `.expect(1)` on drop; make the count explicit too.
        let posts = m
            .requests()
            .await
            .iter()
            .filter(|r| r.method.as_str() == "POST" && r.url.path().contains("first_free"))
            .count();
        assert_eq!(posts, 1, "a {status} allocation was resent");
    }
}

#[tokio::test]
async fn infoblox_a_flaky_read_succeeds_after_one_503() {
    let m = InfobloxMock::start().await;
    m.respond("GET", &format!("{WAPI}/network"), html(503))
        .mounted()
        .times(1)
        .expect(1)
        .priority(1)
        .mount()
        .await;
    m.inventory().await;
    let b = crate::support::infoblox::backend(&m.uri(), "count_free = false");
    let nets = b
        .networks(&CallContext::default())
        .await
        .expect("networks after one 503");
    assert!(!nets.is_empty());
}

#[tokio::test]
async fn infoblox_the_login_read_is_retried_too() {
    let m = InfobloxMock::start().await;
    m.respond("GET", &format!("{WAPI}/"), html(503))
        .mounted()
        .times(1)
        .expect(1)
        .priority(1)
        .mount()
        .await;
    m.inventory().await;
    let b = crate::support::infoblox::backend(&m.uri(), "count_free = false");
    b.networks(&CallContext::default())
        .await
        .expect("networks after a 503 on the login");
}

#[tokio::test]
async fn infoblox_reads_give_up_after_the_bounded_attempts() {
    let m = InfobloxMock::start().await;
    m.login().mount().await;
    m.respond("GET", &format!("{WAPI}/network"), html(503))
        .mounted()
        .expect(u64::from(ATTEMPTS))
        .mount()
        .await;
    let b = crate::support::infoblox::backend(&m.uri(), "count_free = false");
    let e = b
        .networks(&CallContext::default())
        .await
        .expect_err("503 every time");
    assert!(
        matches!(&e, IpamError::Unavailable { backend, .. } if backend == "ipam"),
        "{e:?}"
    );
}

#[tokio::test]
async fn infoblox_an_allocation_that_fails_with_503_is_not_resent() {
    for status in [502, 503, 504] {
        let m = InfobloxMock::start().await;
        m.inventory().await;
        m.respond("POST", &format!("{WAPI}/record:host"), html(status))
            .mounted()
            .expect(1)
            .mount()
            .await;
        let b = crate::support::infoblox::backend(&m.uri(), "");
        let e = b
            .allocate(&CallContext::default(), &alloc("default/10.20.0.0/24"))
            .await
            .expect_err("the allocation fails");
        assert!(
            matches!(
                &e,
                IpamError::Unavailable { .. } | IpamError::Upstream { .. }
            ),
            "{status}: {e:?}"
        );
        let posts = m
            .requests()
            .await
            .iter()
            .filter(|r| r.method.as_str() == "POST")
            .count();
        assert_eq!(posts, 1, "a {status} allocation was resent");
    }
}
