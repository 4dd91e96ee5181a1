//! The container image and the Kubernetes manifests cannot be built or applied here; these tests
//! check what can be checked without a Docker engine or a cluster: the manifests parse, the
//! ConfigMap's config validates (through the real CLI, with the Secret's variables), every
//! reference (Secret keys, volumes, ports, probe routes) resolves, and the image's command line is
//! one the binary accepts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::Value;

use crate::support::gateway_process::Run;
use crate::support::spawn_app;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every non-empty YAML document of `deploy/k8s/*.yaml` (files in name order), as JSON.
fn manifests() -> Vec<Value> {
    let dir = repo().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read manifest");
        let parsed = Yaml::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not parse as YAML: {e}", file.display()));
        let at = file.display().to_string();
        docs.extend(
            parsed
                .iter()
                .map(|d| yaml_to_json(d, &at))
                .filter(|d| !d.is_null()),
        );
    }
    docs
}

/// One YAML node as JSON (YAML 1.2 core schema, as Kubernetes reads it); `at` names the file in
/// failures. Anything JSON cannot hold (a non-scalar key, a NaN, an unresolvable node) fails.
fn yaml_to_json(node: &Yaml, at: &str) -> Value {
    match node {
        Yaml::Value(scalar) => scalar_to_json(scalar, at),
        Yaml::Representation(text, _, _) => Value::String(text.to_string()),
        Yaml::Sequence(items) => Value::Array(items.iter().map(|i| yaml_to_json(i, at)).collect()),
        Yaml::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match yaml_to_json(k, at) {
                        Value::String(s) => s,
                        Value::Array(_) | Value::Object(_) => {
                            panic!("{at}: a mapping key that is not a scalar: {k:?}")
                        }
                        other => other.to_string(),
                    };
                    (key, yaml_to_json(v, at))
                })
                .collect(),
        ),
        Yaml::Tagged(_, inner) => yaml_to_json(inner, at),
        Yaml::Alias(_) | Yaml::BadValue => panic!("{at}: a node that does not resolve: {node:?}"),
    }
}

fn scalar_to_json(scalar: &Scalar, at: &str) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::from(*i),
        Scalar::FloatingPoint(f) => serde_json::Number::from_f64(f.into_inner())
            .map(Value::Number)
            .unwrap_or_else(|| panic!("{at}: {f} has no JSON form")),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

#[test]
fn yaml_reader_gives_kubernetes_types_and_refuses_what_json_cannot_hold() {
    let docs = Yaml::load_from_str(
        "a: 1\nb: \"1\"\nc: true\nd: \"true\"\ne: ~\nf: [x, 2.5]\ng: |\n  line\n---\n---\nh: 0\n",
    )
    .expect("YAML");
    let json: Vec<Value> = docs.iter().map(|d| yaml_to_json(d, "t")).collect();
    assert_eq!(
        json,
        vec![
            serde_json::json!({"a": 1, "b": "1", "c": true, "d": "true", "e": null,
                "f": ["x", 2.5], "g": "line\n"}),
            Value::Null,
            serde_json::json!({"h": 0}),
        ]
    );
    assert!(
        Yaml::load_from_str("a: [1\n").is_err(),
        "unclosed flow sequence"
    );
    assert!(
        Yaml::load_from_str("a: 1\na: 2\n").is_err(),
        "duplicate key"
    );
    let complex_key = Yaml::load_from_str("? [1, 2]\n: v\n").expect("YAML");
    let refused = std::panic::catch_unwind(|| yaml_to_json(&complex_key[0], "t"));
    assert!(refused.is_err(), "a sequence as a key has no JSON form");
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

/// The demo client's argon2 hash: a valid value for the hash variables.
fn a_valid_hash() -> String {
    ipam_gateway::config::DEFAULT_CONFIG
        .lines()
        .find(|l| l.starts_with("password_hash"))
        .and_then(|l| l.split('"').nth(1))
        .expect("demo hash")
        .to_owned()
}

/// Runs the binary with `args` and `env` in `dir`; exit code and stdout + stderr.
fn run(args: &[String], env: &BTreeMap<String, String>, dir: &Path) -> (i32, String) {
    let out = Run::new(args).envs(env).in_dir(dir).run();
    (out.code.unwrap_or(-1), out.output())
}

#[tokio::test]
async fn kubernetes_manifests_are_consistent_and_their_config_validates() {
    let docs = manifests();
    let config_map = of_kind(&docs, "ConfigMap");
    let secret = of_kind(&docs, "Secret");
    let deployment = of_kind(&docs, "Deployment");
    let service = of_kind(&docs, "Service");
    let pod = &deployment["spec"]["template"];
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // Scale-out: at least two replicas, on a backend that is not the single-instance embedded one.
    assert!(deployment["spec"]["replicas"].as_u64().expect("replicas") >= 2);
    let toml_text = config_map["data"]["ipam-gateway.toml"]
        .as_str()
        .expect("the ConfigMap holds ipam-gateway.toml");
    let table: toml::Table = toml_text.parse().expect("TOML");
    for (name, b) in table["backends"].as_table().expect("backends") {
        assert_ne!(
            b["kind"].as_str(),
            Some("embedded"),
            "backend {name}: the embedded backend is single-instance only"
        );
    }

    // Every `env:NAME` secret in the config is a container variable from a key of the Secret.
    let secret_keys: Vec<&str> = secret["stringData"]
        .as_object()
        .expect("stringData")
        .keys()
        .map(String::as_str)
        .collect();
    let mut env = BTreeMap::new();
    for e in c["env"].as_array().expect("env") {
        let name = e["name"].as_str().expect("name");
        let key_ref = &e["valueFrom"]["secretKeyRef"];
        assert_eq!(key_ref["name"], secret["metadata"]["name"], "{name}");
        let key = key_ref["key"].as_str().expect("key");
        assert!(
            secret_keys.contains(&key),
            "{name}: no key {key} in the Secret"
        );
        let value = if name.ends_with("_HASH") {
            a_valid_hash()
        } else {
            "a-password".to_owned()
        };
        env.insert(name.to_owned(), value);
    }
    let references: Vec<&str> = toml_text
        .split('"')
        .filter_map(|s| s.strip_prefix("env:"))
        .collect();
    assert!(
        !references.is_empty(),
        "credentials come from the environment"
    );
    for r in &references {
        assert!(env.contains_key(*r), "env:{r} is not set by the Deployment");
    }

    // The container's own command line, with the ConfigMap mounted where it says, validates with
    // the real binary (print-config instead of serve: the backend is not reachable from here).
    let args: Vec<String> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg").to_owned())
        .collect();
    let config_path = args
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("--config PATH")
        .clone();
    let mounts = c["volumeMounts"].as_array().expect("mounts");
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let config_mount = mounts
        .iter()
        .find(|m| m["mountPath"] == config_path.as_str())
        .expect("the config file is mounted at the --config path");
    let config_volume = volume(config_mount["name"].as_str().expect("name"));
    assert_eq!(
        config_volume["configMap"]["name"],
        config_map["metadata"]["name"]
    );
    assert_eq!(config_mount["subPath"], "ipam-gateway.toml");
    let dir = tempfile::tempdir().expect("dir");
    let local_config = dir.path().join("ipam-gateway.toml");
    std::fs::write(&local_config, toml_text).expect("write");
    let cli: Vec<String> = args
        .iter()
        .map(|a| {
            if *a == config_path {
                local_config.display().to_string()
            } else if a == "serve" {
                "print-config".to_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    let (code, out) = run(&cli, &env, dir.path());
    assert_eq!(code, 0, "the ConfigMap's config validates: {out}");
    // The same text through the library, secrets inline: the keys it sets are the ones in force.
    let mut inline = toml_text.to_owned();
    for (name, value) in &env {
        inline = inline.replace(&format!("\"env:{name}\""), &format!("\"{value}\""));
    }
    let settings = ipam_gateway::config::Settings::from_toml(&inline).expect("validates");
    let server = &settings.server;
    assert!(server.auth_failure_limit > 0, "the auth throttle is on");

    // Ports: the named container ports are the config's listeners; the Service and the
    // Prometheus annotations use them.
    let port = |name: &str| {
        c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
            .as_u64()
            .expect("number")
    };
    assert_eq!(port("https"), u64::from(settings.listen.port()));
    let metrics = settings.metrics_listen.expect("metrics on");
    assert_eq!(port("metrics"), u64::from(metrics.port()));
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        port("metrics").to_string()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let pod_labels = &pod["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&pod_labels[k], v, "the Service selects the pods");
    }
    // vRA page tokens live in the replica that issued them (15 minutes idle).
    assert_eq!(service["spec"]["sessionAffinity"], "ClientIP");
    assert!(
        service["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"]
            .as_u64()
            .expect("affinity timeout")
            >= 900
    );
    for p in service["spec"]["ports"].as_array().expect("ports") {
        port(p["targetPort"].as_str().expect("named target port"));
    }

    // Probes: HTTPS (the config serves TLS from files), on the container's https port, on routes
    // the gateway really serves without credentials.
    assert_eq!(server.tls.mode, ipam_gateway::config::TlsMode::Files);
    let app = spawn_app().await;
    for (probe, route) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], route, "{probe}");
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        assert_eq!(get["port"], "https", "{probe}");
        let r = app.client.get(app.url(route)).send().await.expect("probe");
        assert_eq!(
            r.status(),
            200,
            "{probe}: {route} answers without credentials"
        );
    }
    app.stop().await;
    let readiness_timeout = c["readinessProbe"]["timeoutSeconds"]
        .as_u64()
        .expect("timeout");
    assert!(
        readiness_timeout > server.readyz_timeout.as_secs(),
        "/readyz answers (ready or not) before the probe gives up"
    );

    // TLS material from a Secret, the same for every replica, where the config reads it.
    let tls_dir = Path::new(server.tls.cert_file.as_deref().expect("cert_file"))
        .parent()
        .expect("dir")
        .to_owned();
    let tls_mount = mounts
        .iter()
        .find(|m| m["mountPath"] == tls_dir.display().to_string().as_str())
        .expect("the TLS Secret is mounted where the config reads it");
    assert!(volume(tls_mount["name"].as_str().expect("name"))["secret"]["secretName"].is_string());

    // Hardening: non-root, read-only root file system, the state dir an emptyDir.
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["spec"]["securityContext"]["runAsUser"], 0);
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let state_mount = mounts
        .iter()
        .find(|m| m["mountPath"] == server.state_dir.display().to_string().as_str())
        .expect("the state dir is a mounted volume");
    assert!(volume(state_mount["name"].as_str().expect("name"))["emptyDir"].is_object());
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][kind][r].is_string(), "resources.{kind}.{r}");
        }
    }
}

/// `ENTRYPOINT`/`CMD` exec-form arrays and `ENV` pairs of the Dockerfile's last stage.
struct Image {
    stages: usize,
    user: String,
    exposed: Vec<String>,
    env: BTreeMap<String, String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    copies: Vec<(String, String)>,
}

fn dockerfile() -> Image {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    // Join continuation lines, drop comments.
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(t);
            lines.push(std::mem::take(&mut current));
        }
    }
    let mut image = Image {
        stages: 0,
        user: String::new(),
        exposed: Vec::new(),
        env: BTreeMap::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        copies: Vec::new(),
    };
    let exec_form = |rest: &str| -> Vec<String> {
        serde_json::from_str(rest).unwrap_or_else(|e| panic!("exec form {rest}: {e}"))
    };
    for line in lines {
        let (instr, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let rest = rest.trim();
        match instr.to_uppercase().as_str() {
            "FROM" => {
                image.stages += 1;
                image.user.clear();
                image.env.clear();
                image.copies.clear();
            }
            "USER" => image.user = rest.to_owned(),
            "EXPOSE" => image
                .exposed
                .extend(rest.split_whitespace().map(str::to_owned)),
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV k=v");
                    image.env.insert(k.to_owned(), v.to_owned());
                }
            }
            "ENTRYPOINT" => image.entrypoint = exec_form(rest),
            "CMD" => image.cmd = exec_form(rest),
            "COPY" => {
                let words: Vec<&str> = rest
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                if let [from, to] = words[..] {
                    image.copies.push((from.to_owned(), to.to_owned()));
                }
            }
            _ => {}
        }
    }
    image
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_its_command_line_is_valid() {
    let image = dockerfile();
    assert!(image.stages >= 2, "multi-stage");
    assert!(
        !image.user.is_empty() && !image.user.starts_with('0') && !image.user.starts_with("root"),
        "the runtime stage runs as a non-root user, not {:?}",
        image.user
    );
    assert!(image.exposed.contains(&"8443".to_owned()));
    assert!(image.exposed.contains(&"9464".to_owned()));
    assert_eq!(image.entrypoint, vec!["/usr/local/bin/ipam-gateway"]);

    // The Deployment runs the image's own command line.
    let docs = manifests();
    let c = &of_kind(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = serde_json::from_value(c["args"].clone()).expect("args");
    assert_eq!(args, image.cmd, "Deployment args = the image's CMD");

    // CMD with the config file the image copies in, under the image's ENV, is a valid command
    // line: `serve --help` parses, and print-config validates the default config as overridden.
    let config_in_image = image
        .cmd
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("--config")
        .clone();
    let (source, _) = image
        .copies
        .iter()
        .find(|(_, to)| *to == config_in_image)
        .expect("the image copies its config file in");
    let source = repo().join(source);
    assert!(source.is_file(), "{}", source.display());
    let dir = tempfile::tempdir().expect("dir");
    let mut env = image.env.clone();
    // The image's state dir does not exist here.
    env.insert(
        "IPAMGW_SERVER__STATE_DIR".into(),
        dir.path().display().to_string(),
    );
    let local = |extra: &str| -> Vec<String> {
        image
            .cmd
            .iter()
            .map(|a| {
                if *a == config_in_image {
                    source.display().to_string()
                } else if a == "serve" {
                    extra.to_owned()
                } else {
                    a.clone()
                }
            })
            .collect()
    };
    let mut help = local("serve");
    help.push("--help".into());
    let (code, out) = run(&help, &env, dir.path());
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&local("print-config"), &env, dir.path());
    assert_eq!(code, 0, "{out}");
    let printed: toml::Table = out.parse().expect("print-config prints TOML");
    assert_eq!(printed["server"]["listen"].as_str(), Some("0.0.0.0:8443"));
    assert_eq!(printed["metrics"]["listen"].as_str(), Some("0.0.0.0:9464"));
    assert_eq!(
        printed["server"]["state_dir"].as_str(),
        Some(dir.path().display().to_string().as_str())
    );
}
