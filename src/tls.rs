//! TLS material: a configured certificate/key pair, or a self-signed one generated on first start
//! and kept under `state_dir/tls/` so its fingerprint stays the same across restarts.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::{TlsConfig, TlsMode};

#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub cert_path: PathBuf,
    /// SHA-256 of the leaf certificate (DER), as `AA:BB:…`.
    pub fingerprint: String,
    pub generated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

fn file_err(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// Loads or creates the server's certificate. `None` when TLS is off.
pub fn load_or_create(cfg: &TlsConfig, state_dir: &Path) -> Result<Option<TlsMaterial>, TlsError> {
    match cfg.mode {
        TlsMode::Off => Ok(None),
        TlsMode::Files => {
            let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) else {
                return Err(TlsError::Generate(
                    "server.tls.cert_file and key_file are required".into(),
                ));
            };
            let cert_pem = std::fs::read(cert).map_err(|e| file_err(cert, e))?;
            let key_pem = std::fs::read(key).map_err(|e| file_err(key, e))?;
            let fingerprint = fingerprint_pem(&cert_pem).map_err(|e| file_err(cert, e))?;
            Ok(Some(TlsMaterial {
                cert_pem,
                key_pem,
                cert_path: cert.clone(),
                fingerprint,
                generated: false,
            }))
        }
        TlsMode::SelfSigned => {
            let dir = state_dir.join("tls");
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if cert.exists() && key.exists() {
                let cert_pem = std::fs::read(&cert).map_err(|e| file_err(&cert, e))?;
                let key_pem = std::fs::read(&key).map_err(|e| file_err(&key, e))?;
                let fingerprint = fingerprint_pem(&cert_pem).map_err(|e| file_err(&cert, e))?;
                return Ok(Some(TlsMaterial {
                    cert_pem,
                    key_pem,
                    cert_path: cert,
                    fingerprint,
                    generated: false,
                }));
            }
            let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
            for h in &cfg.hostnames {
                if !names.contains(h) {
                    names.push(h.clone());
                }
            }
            let certified = rcgen::generate_simple_self_signed(names)
                .map_err(|e| TlsError::Generate(e.to_string()))?;
            let cert_pem = certified.cert.pem().into_bytes();
            let key_pem = certified.signing_key.serialize_pem().into_bytes();
            std::fs::create_dir_all(&dir).map_err(|e| file_err(&dir, e))?;
            write_private(&key, &key_pem)?;
            std::fs::write(&cert, &cert_pem).map_err(|e| file_err(&cert, e))?;
            Ok(Some(TlsMaterial {
                fingerprint: fingerprint_der(certified.cert.der()),
                cert_pem,
                key_pem,
                cert_path: cert,
                generated: true,
            }))
        }
    }
}

/// Protocol versions the server speaks: TLS 1.3 and 1.2, nothing older (rustls cannot speak older
/// ones at all; this makes the choice explicit and keeps it if a dependency's defaults change).
pub const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The rustls server configuration for `material`: aws-lc-rs, TLS 1.2+ only, ALPN h2 and
/// http/1.1, no client certificates.
pub fn server_config(material: &TlsMaterial) -> Result<rustls::ServerConfig, TlsError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let path = &material.cert_path;
    let certs = CertificateDer::pem_slice_iter(&material.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate found"));
    }
    let key = PrivateKeyDer::from_pem_slice(&material.key_pem)
        .map_err(|e| file_err(path, format!("bad private key PEM: {e}")))?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError::Generate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| file_err(path, format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| file_err(path, e))?;
    f.write_all(bytes).map_err(|e| file_err(path, e))
}

pub fn fingerprint_der(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Fingerprint of the first certificate in a PEM bundle.
pub fn fingerprint_pem(pem: &[u8]) -> Result<String, String> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem).map_err(|_| "certificate is not PEM text".to_owned())?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let start = text.find(begin).ok_or("no PEM certificate found")? + begin.len();
    let stop = text[start..]
        .find(end)
        .ok_or("unterminated PEM certificate")?
        + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("bad PEM body: {e}"))?;
    Ok(fingerprint_der(&der))
}
