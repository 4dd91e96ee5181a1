use crate::support::{AppOptions, DEMO_PASSWORD, spawn_app, spawn_with};

#[tokio::test]
async fn no_credentials_is_401_with_a_basic_challenge() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/api/v1/networks"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Basic realm=")
    );
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_401() {
    let app = spawn_app().await;
    for (user, pw) in [("demo", "wrong"), ("nobody", DEMO_PASSWORD), ("demo", "")] {
        let r = app
            .client
            .get(app.url("/api/v1/networks"))
            .basic_auth(user, Some(pw))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401, "{user}:{pw}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"]["message"], "invalid username or password");
    }
    app.stop().await;
}

#[tokio::test]
async fn malformed_authorization_headers_are_401_and_say_why() {
    let app = spawn_app().await;
    for header in ["Bearer abc", "Basic !!!notbase64", "Basic ZGVtbw=="] {
        let r = app
            .client
            .get(app.url("/api/v1/networks"))
            .header("authorization", header)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 401, "{header}");
        let body: serde_json::Value = r.json().await.expect("json");
        let msg = body["error"]["message"].as_str().expect("message");
        assert!(msg.starts_with("malformed Authorization header"), "{msg}");
    }
    app.stop().await;
}

#[tokio::test]
async fn right_credentials_pass_and_are_remembered_by_hash() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let r = app.get("/api/v1/networks").send().await.expect("get");
        assert_eq!(r.status(), 200);
    }
    // A changed password must not ride on the cache.
    let r = app
        .client
        .get(app.url("/api/v1/networks"))
        .basic_auth("demo", Some("demo-secreT"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn clients_are_bound_to_their_backend() {
    // A second backend and a client bound to it: ids from one backend are not served to the other.
    let hash = ipam_gateway::auth::hash_password(&"other-secret".into()).expect("hash");
    let config = format!(
        "{}\n[clients.other]\npassword_hash = \"{hash}\"\nbackend = \"second\"\n\
         [backends.second]\nkind = \"embedded\"\npath = \"second.redb\"\n\
         [[backends.second.networks]]\nname = \"only-here\"\ncidr = \"192.168.50.0/24\"\n",
        crate::support::BASE_CONFIG.as_str()
    );
    let app = spawn_with(AppOptions {
        config,
        ..Default::default()
    })
    .await;
    let r: serde_json::Value = app
        .client
        .get(app.url("/api/v1/networks"))
        .basic_auth("other", Some("other-secret"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = r["networks"]
        .as_array()
        .expect("list")
        .iter()
        .map(|n| n["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["only-here"]);
    let demo_net = app.network_id("lab-servers").await;
    let r = app
        .client
        .post(app.url("/api/v1/allocations"))
        .basic_auth("other", Some("other-secret"))
        .json(&serde_json::json!({"owner": "x", "networks": [demo_net]}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn tls_serves_the_generated_certificate_and_keeps_it_across_restarts() {
    let app = spawn_with(AppOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(app.base_url.starts_with("https://127.0.0.1:"));
    let r = app.get("/api/v1/networks").send().await.expect("https get");
    assert_eq!(r.status(), 200);
    let fp = app.fingerprint.clone().expect("fingerprint");
    assert_eq!(fp.len(), 32 * 3 - 1, "SHA-256 as AA:BB:…");
    let pem = app.cert_pem.clone().expect("cert");
    assert_eq!(
        ipam_gateway::tls::fingerprint_pem(&pem).expect("fp"),
        fp,
        "the printed fingerprint is the file's"
    );
    // A client that does not trust the certificate is refused.
    let strict = reqwest::Client::builder().build().expect("client");
    assert!(strict.get(app.url("/healthz")).send().await.is_err());
    // Same state dir → same certificate.
    let again =
        ipam_gateway::tls::load_or_create(&Default::default(), app.state_dir.path()).expect("tls");
    assert_eq!(again.expect("material").fingerprint, fp);
    app.stop().await;
}

#[tokio::test]
async fn a_configured_certificate_pair_is_used() {
    let dir = tempfile::tempdir().expect("dir");
    let generated =
        ipam_gateway::tls::load_or_create(&Default::default(), dir.path()).expect("gen");
    let material = generated.expect("material");
    let cert = dir.path().join("tls/cert.pem");
    let key = dir.path().join("tls/key.pem");
    let config = crate::support::BASE_CONFIG.replace(
        "mode = \"self_signed\"",
        &format!(
            "mode = \"files\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let mut cfg = ipam_gateway::config::Config::from_toml(&config).expect("config");
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.metrics.enabled = false;
    let other_state = tempfile::tempdir().expect("state");
    cfg.server.state_dir = other_state.path().to_owned();
    let app = ipam_gateway::Application::build(cfg.validate().expect("valid"))
        .await
        .expect("build");
    assert_eq!(app.fingerprint(), Some(material.fingerprint.as_str()));
    assert!(
        !other_state.path().join("tls").exists(),
        "nothing generated when a pair is configured"
    );
}
