//! The vRA provider package: what vRA imports, built by the library and by the CLI.

use std::io::{Cursor, Read};

use ipam_gateway::contracts::vra::OPERATIONS;
use ipam_gateway::package::vra::{PackageOptions, build};
use serde_json::Value;

use crate::support::gateway_process::Run;

fn entries(zip_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes)).expect("a zip");
    (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).expect("entry");
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).expect("read");
            (f.name().expect("entry name").into_owned(), bytes)
        })
        .collect()
}

fn file<'a>(entries: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &entries
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .1
}

fn text(entries: &[(String, Vec<u8>)], name: &str) -> String {
    String::from_utf8(file(entries, name).to_vec()).expect("utf-8")
}

#[test]
fn the_package_holds_what_vra_imports_flat_at_the_root() {
    let opts = PackageOptions {
        name: "AcmeIPAM".into(),
        version: "2.1.0".into(),
        ..Default::default()
    };
    let top = entries(&build(&opts).expect("package"));
    let names: Vec<&str> = top.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "registration.yaml",
            "endpoint-schema.json",
            "logo.png",
            "CHANGELOG.md",
            "bundle.zip"
        ]
    );
    let reg = text(&top, "registration.yaml");
    assert!(
        reg.contains("name: \"AcmeIPAM\"") && reg.contains("version: \"2.1.0\""),
        "{reg}"
    );
    assert!(text(&top, "CHANGELOG.md").contains("## 2.1.0"));
    assert!(file(&top, "logo.png").starts_with(b"\x89PNG\r\n\x1a\n"));

    let schema: Value = serde_json::from_slice(file(&top, "endpoint-schema.json")).expect("json");
    for field in [
        "privateKeyId",
        "privateKey",
        "hostName",
        "backend",
        "addressSpace",
        "tagFilter",
    ] {
        assert!(
            schema["schema"][field].is_object(),
            "{field} missing in the form"
        );
        let in_layout = schema["layout"]["pages"][0]["sections"]
            .as_array()
            .expect("sections")
            .iter()
            .flat_map(|s| s["fields"].as_array().expect("fields").iter())
            .any(|f| f["id"] == field);
        assert!(in_layout, "{field} not laid out");
    }
    assert_eq!(
        schema["schema"]["privateKey"]["type"]["dataType"],
        "secureString"
    );
    assert_eq!(
        schema["schema"]["hostName"]["constraints"]["required"],
        true
    );

    let bundle = entries(file(&top, "bundle.zip"));
    assert_eq!(bundle.len(), 16, "an .abx and a .zip per operation");
    for op in &OPERATIONS {
        let action = format!("AcmeIPAM_{}", op.action_suffix);
        assert!(
            reg.contains(&format!("{}: \"{action}\"", op.registration_key)),
            "{reg}"
        );
        let abx = text(&bundle, &format!("{}.abx", op.file_stem));
        assert!(abx.contains(&format!("name: \"{action}\"")), "{abx}");
        assert!(abx.contains(&format!("exportId: \"{action}\"")), "{abx}");
        assert!(abx.contains("entrypoint: \"source.handler\""));
        assert!(abx.contains("runtime: \"python\""));
        let code = entries(file(&bundle, &format!("{}.zip", op.file_stem)));
        let code_names: Vec<&str> = code.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(code_names, ["source.py", "ipamgw_vra.py"]);
        let source = text(&code, "source.py");
        assert!(source.contains("def handler(context, inputs):"));
        assert!(
            source.contains(&format!("run(context, inputs, \"{}\")", op.path)),
            "{source}"
        );
        let helper = text(&code, "ipamgw_vra.py");
        assert!(helper.contains("PROVIDER = \"AcmeIPAM\""));
        assert!(!helper.contains("@PROVIDER_"), "placeholders filled");
    }
}

#[test]
fn the_shim_uses_only_the_standard_library() {
    let top = entries(&build(&PackageOptions::default()).expect("package"));
    let bundle = entries(file(&top, "bundle.zip"));
    let code = entries(file(&bundle, "allocate_ip.zip"));
    let helper = text(&code, "ipamgw_vra.py");
    let stdlib = [
        "base64",
        "json",
        "socket",
        "ssl",
        "urllib.error",
        "urllib.request",
    ];
    for line in helper
        .lines()
        .filter(|l| l.starts_with("import ") || l.starts_with("from "))
    {
        let module = line.split_whitespace().nth(1).expect("module");
        assert!(stdlib.contains(&module), "non-stdlib import: {line}");
    }
    // Nothing that would break Python 3.7.
    for construct in [":=", "match ", "str | None", "removeprefix"] {
        assert!(!helper.contains(construct), "{construct} is not Python 3.7");
    }
}

#[test]
fn cli_package_vra_writes_the_zip() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("pkg.zip");
    let run = Run::new([
        "package",
        "vra",
        "--name",
        "Lab_IPAM",
        "--version",
        "0.9.1",
        "--out",
    ])
    .arg(&out)
    .run();
    assert!(run.success(), "{}", run.stderr);
    let top = entries(&std::fs::read(&out).expect("written"));
    assert!(text(&top, "registration.yaml").contains("Lab_IPAM_AllocateIP"));

    let bad = Run::new(["package", "vra", "--name", "Lab IPAM", "--out"])
        .arg(dir.path().join("bad.zip"))
        .run();
    assert!(!bad.success());
    assert!(bad.stderr.contains("invalid name"));
}
