//! TLS towards an HTTP backend (phpIPAM, an Infoblox grid): how its certificate is verified, and
//! what the gateway says when it refuses one.
//!
//! The backend's `reqwest` client gets a rustls configuration built here whose certificate
//! verifier is one of three:
//! - **chain** (default): the platform verifier reqwest uses itself (system roots, plus the
//!   `ca_file` certificates as extra roots), wrapped so that a refusal carries its reason in words
//!   and the SHA-256 fingerprint of the certificate the server presented;
//! - **pinned** (`tls_fingerprint`): exactly that certificate is accepted, whatever its chain,
//!   names or `CA:TRUE` flag — the "accept this certificate" model of vRA and Avi. The handshake
//!   signature is still verified, so only the holder of that certificate's key gets through;
//! - **off** (`verify_tls = false`): anything is accepted (labs only; a warning is logged).
//!
//! [`describe`] finds such a refusal (or any other rustls failure) in a `reqwest` error's
//! `source()` chain, for the transport error the backend returns.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

/// SHA-256 of a certificate (DER); shown and configured as `SHA256:AB:CD:…` (32 upper-case hex
/// pairs), the form `openssl x509 -noout -fingerprint -sha256` prints after its `=`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CertFingerprint([u8; 32]);

impl CertFingerprint {
    pub fn of(der: &[u8]) -> Self {
        CertFingerprint(Sha256::digest(der).into())
    }

    /// Reads a fingerprint leniently: with or without the `SHA256:` prefix (any case, also
    /// `SHA-256:` or openssl's whole `sha256 Fingerprint=…` line), upper or lower case, hex pairs
    /// separated by colons or not separated at all. The error says what is wrong (for the config
    /// key that holds it).
    pub fn parse(text: &str) -> Result<Self, String> {
        const HOW: &str = "expected SHA256: and 32 hex pairs, e.g. \"SHA256:AB:CD:…\" \
                           (openssl x509 -noout -fingerprint -sha256 -in cert.pem)";
        let t = text.trim();
        if t.is_empty() {
            return Err(format!("is empty; {HOW}"));
        }
        let lower = t.to_ascii_lowercase();
        let rest = if let Some(i) = lower.find("fingerprint=") {
            let algo = lower[..i].trim();
            if !matches!(algo, "sha256" | "sha-256") {
                return Err(format!(
                    "'{}' is not a SHA-256 fingerprint; {HOW}",
                    &t[..i].trim()
                ));
            }
            &t[i + "fingerprint=".len()..]
        } else if let Some(p) = ["sha256:", "sha-256:"]
            .iter()
            .find(|p| lower.starts_with(**p))
        {
            &t[p.len()..]
        } else {
            t
        };
        // Another algorithm's label (`SHA1:`, `MD5:`): letters before the first colon that are
        // not all hex digits.
        if let Some((label, _)) = rest.split_once(':')
            && label.len() > 2
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(format!(
                "only SHA-256 fingerprints are accepted, not {label}; {HOW}"
            ));
        }
        if let Some((i, c)) = rest
            .char_indices()
            .find(|(_, c)| !c.is_ascii_hexdigit() && *c != ':')
        {
            return Err(format!(
                "'{c}' (character {}) is neither a hex digit nor ':'; {HOW}",
                t.len() - rest.len() + i + 1
            ));
        }
        let hex: String = if rest.contains(':') {
            let pairs: Vec<&str> = rest.split(':').collect();
            if let Some(bad) = pairs.iter().find(|p| p.len() != 2) {
                return Err(format!(
                    "colons must separate pairs of hex digits, found '{bad}'; {HOW}"
                ));
            }
            pairs.concat()
        } else {
            rest.to_owned()
        };
        if !hex.len().is_multiple_of(2) {
            return Err(format!(
                "has an odd number of hex digits ({}); {HOW}",
                hex.len()
            ));
        }
        let bytes = hex.len() / 2;
        if bytes != 32 {
            let sha1 = if bytes == 20 {
                " (that is the length of a SHA-1 fingerprint)"
            } else {
                ""
            };
            return Err(format!(
                "has {bytes} bytes{sha1}; a SHA-256 fingerprint has 32 (64 hex digits); {HOW}"
            ));
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("is not hexadecimal; {HOW}"))?;
        }
        Ok(CertFingerprint(out))
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHA256")?;
        for b in self.0 {
            write!(f, ":{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// How the backend's certificate is verified (see the module doc).
#[derive(Debug, Clone)]
pub enum Verification {
    /// System roots plus the certificates of `ca_file` (PEM), if any.
    Chain { ca_pem: Option<Vec<u8>> },
    /// Exactly this certificate.
    Pinned(CertFingerprint),
    /// Anything (`verify_tls = false`).
    Off,
}

/// A refused server certificate: why, and which certificate. Travels inside the rustls error up
/// the `reqwest` error's source chain; its text is what the admin reads.
#[derive(Debug)]
pub struct Refusal {
    message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Refusal {}

#[derive(Debug)]
enum Mode {
    Chain {
        inner: Arc<dyn ServerCertVerifier>,
        /// Fingerprints of the `ca_file` certificates.
        ca_file: Vec<CertFingerprint>,
    },
    Pinned(CertFingerprint),
    Off,
}

/// The gateway's server-certificate verifier for one backend.
#[derive(Debug)]
struct Verifier {
    /// The config key of the backend section (`backends.ipam`), for the hints.
    key: String,
    backend: String,
    mode: Mode,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn refuse(&self, message: String) -> rustls::Error {
        tracing::warn!(backend = %self.backend, "TLS: {message}");
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal {
            message,
        }))))
    }

    fn pin_hint(&self, presented: CertFingerprint) -> String {
        format!(
            "if it is the server's own certificate, accept exactly it with {}.tls_fingerprint = \"{presented}\"",
            self.key
        )
    }

    /// The words for the chain verifier's refusal `e` of the certificate `presented`.
    fn chain_refusal(
        &self,
        e: &rustls::Error,
        presented: CertFingerprint,
        ca_file: &[CertFingerprint],
    ) -> String {
        let in_ca_file = ca_file.contains(&presented);
        let (reason, hint) = match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => (
                if in_ca_file {
                    "issuer unknown (UnknownIssuer)".to_owned()
                } else {
                    "issued by an authority that is neither in the system roots nor in ca_file \
                     (UnknownIssuer)"
                        .to_owned()
                },
                true,
            ),
            rustls::Error::InvalidCertificate(CertificateError::Other(o))
                if o.to_string().contains("CaUsedAsEndEntity") =>
            {
                (
                    if in_ca_file {
                        "the certificate is in ca_file, but it is a CA certificate \
                         (basicConstraints CA:TRUE, as `openssl req -x509` makes by default), \
                         which cannot also be the server's own certificate (CaUsedAsEndEntity); \
                         remove ca_file and pin it instead"
                            .to_owned()
                    } else {
                        "the server presents a CA certificate (basicConstraints CA:TRUE) as its \
                         own certificate (CaUsedAsEndEntity)"
                            .to_owned()
                    },
                    true,
                )
            }
            rustls::Error::InvalidCertificate(c) => (c.to_string(), false),
            other => (other.to_string(), false),
        };
        let mut message =
            format!("certificate verification failed: {reason}; presented certificate {presented}");
        if hint {
            message.push_str("; ");
            message.push_str(&self.pin_hint(presented));
        }
        message
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = CertFingerprint::of(end_entity);
        match &self.mode {
            Mode::Off => Ok(ServerCertVerified::assertion()),
            Mode::Pinned(expected) if presented == *expected => Ok(ServerCertVerified::assertion()),
            Mode::Pinned(expected) => Err(self.refuse(format!(
                "certificate verification failed: the server presents certificate {presented}, \
                 not the one {}.tls_fingerprint pins ({expected})",
                self.key
            ))),
            Mode::Chain { inner, ca_file } => inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| self.refuse(self.chain_refusal(&e, presented, ca_file))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.mode {
            Mode::Chain { inner, .. } => inner.verify_tls12_signature(message, cert, dss),
            // As reqwest's `danger_accept_invalid_certs`: nothing is checked.
            Mode::Off => Ok(HandshakeSignatureValid::assertion()),
            // The pin names a certificate; the signature proves the server holds its key.
            Mode::Pinned(_) => rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            ),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.mode {
            Mode::Chain { inner, .. } => inner.verify_tls13_signature(message, cert, dss),
            Mode::Off => Ok(HandshakeSignatureValid::assertion()),
            Mode::Pinned(_) => rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            ),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match &self.mode {
            Mode::Chain { inner, .. } => inner.supported_verify_schemes(),
            Mode::Pinned(_) | Mode::Off => self
                .provider
                .signature_verification_algorithms
                .supported_schemes(),
        }
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        match &self.mode {
            Mode::Chain { inner, .. } => inner.root_hint_subjects(),
            Mode::Pinned(_) | Mode::Off => None,
        }
    }
}

/// The rustls configuration of a backend's client: TLS 1.2 and 1.3, ALPN h2 and http/1.1 (as
/// reqwest's own), the verifier `verification` says. `key` is the backend's config section
/// (`backends.ipam`), named in the hints. An error is the reason, for the caller to place.
pub fn client_config(
    key: &str,
    backend: &str,
    verification: &Verification,
) -> Result<rustls::ClientConfig, String> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let mode = match verification {
        Verification::Off => Mode::Off,
        Verification::Pinned(fp) => Mode::Pinned(*fp),
        Verification::Chain { ca_pem } => {
            let extra = match ca_pem {
                Some(pem) => CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("ca_file is not a PEM bundle: {e}"))?,
                None => Vec::new(),
            };
            let ca_file = extra.iter().map(|c| CertFingerprint::of(c)).collect();
            let inner = if extra.is_empty() {
                rustls_platform_verifier::Verifier::new(provider.clone())
            } else {
                rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            }
            .map_err(|e| format!("cannot load the trusted certificates: {e}"))?;
            Mode::Chain {
                inner: Arc::new(inner),
                ca_file,
            }
        }
    };
    let verifier = Verifier {
        key: key.to_owned(),
        backend: backend.to_owned(),
        mode,
        provider: provider.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| format!("TLS versions: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What went wrong with TLS in `e`'s source chain, in words: a [`Refusal`] as it stands, another
/// rustls failure as `TLS handshake failed: …`. `None` when TLS is not the cause.
pub fn describe(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refusal>() {
            return Some(r.to_string());
        }
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            if let rustls::Error::InvalidCertificate(CertificateError::Other(o)) = t
                && let Some(r) = o.0.downcast_ref::<Refusal>()
            {
                return Some(r.to_string());
            }
            return Some(format!("TLS handshake failed: {t}"));
        }
        // `io::Error::source()` skips the error it wraps; look at that one itself.
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:\
                      00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

    #[test]
    fn fingerprints_print_as_upper_case_pairs_and_parse_leniently() {
        let fp = CertFingerprint::parse(FP).expect("canonical");
        assert_eq!(fp.to_string(), FP);
        let bare = FP.trim_start_matches("SHA256:");
        for text in [
            bare.to_owned(),
            bare.to_ascii_lowercase(),
            FP.to_ascii_lowercase(),
            bare.replace(':', ""),
            format!("  sha-256:{bare} "),
            format!("sha256 Fingerprint={bare}"),
            format!("SHA256 Fingerprint={}", bare.to_ascii_lowercase()),
        ] {
            assert_eq!(CertFingerprint::parse(&text), Ok(fp), "{text}");
        }
        assert_eq!(
            CertFingerprint::of(b"x").to_string().len(),
            "SHA256:".len() + 32 * 3 - 1
        );
    }

    #[test]
    fn every_fingerprint_mistake_is_named() {
        let bare = FP.trim_start_matches("SHA256:");
        let cases: [(String, &str); 9] = [
            (String::new(), "is empty"),
            (FP[..FP.len() - 3].to_owned(), "has 31 bytes"),
            (format!("{FP}:00"), "has 33 bytes"),
            (
                "SHA1:DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09".to_owned(),
                "not SHA1",
            ),
            (
                "DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09".to_owned(),
                "length of a SHA-1",
            ),
            (
                format!("md5 Fingerprint={bare}"),
                "is not a SHA-256 fingerprint",
            ),
            (bare.replacen("00", "0G", 1), "'G' (character 2)"),
            (bare.replacen("00:11", "001:1", 1), "found '001'"),
            (bare.replace(':', "")[1..].to_owned(), "odd number"),
        ];
        for (text, why) in cases {
            let e = CertFingerprint::parse(&text).expect_err(&text);
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains("SHA256:AB:CD"), "says the form: {e}");
        }
    }

    #[test]
    fn a_refusal_is_found_through_io_errors() {
        let refusal = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(
            Arc::new(Refusal {
                message: "certificate verification failed: x".into(),
            }),
        )));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refusal);
        assert_eq!(
            describe(&io).as_deref(),
            Some("certificate verification failed: x")
        );
        let other = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert_eq!(
            describe(&other).as_deref(),
            Some("TLS handshake failed: received fatal alert: HandshakeFailure")
        );
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(describe(&plain), None);
    }
}
