//! TLS to PostgreSQL with rustls, following libpq's rules for `sslmode` and `sslrootcert` (both
//! read from `DATABASE_URL`, as a URL query parameter or a `key=value` pair):
//!
//! | `sslmode` | TLS | certificate checked against the roots | host name checked |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `prefer` (the default) | if the server offers it, else plaintext | no | no |
//! | `require` | always | only when `sslrootcert` is given (then like `verify-ca`) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes |
//!
//! The roots are the PEM file named by `sslrootcert`, or the system's CA store
//! (`sslrootcert=system`, or no `sslrootcert` at all) with Mozilla's roots as the fallback when
//! the system has none. As in libpq, `sslrootcert=system` implies `verify-full` and refuses a
//! weaker mode, and `sslmode` is ignored for Unix sockets (PostgreSQL has no TLS there).
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require` and refuses unknown
//! options, so the two options are taken out of the connection string here, and the rest is
//! parsed by tokio-postgres unchanged.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode as TokioSslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, TlsError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            // `allow` (plaintext first) is not offered: it only ever weakens `prefer`.
            _ => Err(TlsError::Invalid(
                "sslmode must be disable, prefer, require, verify-ca or verify-full".into(),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The system's CA store, or Mozilla's roots when the system has none.
    System,
    /// A PEM file (`sslrootcert=/path/to/ca.pem`).
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid DATABASE_URL: {0}")]
    Invalid(String),
    #[error("cannot read sslrootcert {path}: {reason}")]
    RootCertificate { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// How connections to one database use TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsPolicy {
    pub mode: SslMode,
    pub roots: Roots,
}

impl fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sslmode={} roots={:?}", self.mode.as_str(), self.roots)
    }
}

impl TlsPolicy {
    /// What libpq would do with these options (`sslmode`, `sslrootcert`).
    fn from_options(sslmode: Option<&str>, sslrootcert: Option<&str>) -> Result<TlsPolicy, TlsError> {
        let mode = sslmode.map(SslMode::parse).transpose()?;
        match sslrootcert {
            Some("system") => match mode {
                None | Some(SslMode::VerifyFull) => Ok(TlsPolicy {
                    mode: SslMode::VerifyFull,
                    roots: Roots::System,
                }),
                Some(weaker) => Err(TlsError::Invalid(format!(
                    "sslrootcert=system needs sslmode=verify-full, not {}",
                    weaker.as_str()
                ))),
            },
            Some("") | None => Ok(TlsPolicy {
                mode: mode.unwrap_or(SslMode::Prefer),
                roots: Roots::System,
            }),
            Some(path) => {
                // libpq: with a root certificate file, `require` verifies the chain like `verify-ca`.
                let mode = match mode.unwrap_or(SslMode::Prefer) {
                    SslMode::Require => SslMode::VerifyCa,
                    other => other,
                };
                Ok(TlsPolicy {
                    mode,
                    roots: Roots::File(PathBuf::from(path)),
                })
            }
        }
    }

    /// The rustls connector that enforces this policy.
    pub fn connector(&self) -> Result<MakeRustlsConnect, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Setup(error.to_string()))?;
        let webpki = match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => None,
            SslMode::VerifyCa => Some(self.webpki_verifier(provider.clone())?),
            SslMode::VerifyFull => {
                let config = builder.with_root_certificates(self.root_store()?).with_no_client_auth();
                return Ok(MakeRustlsConnect::new(config));
            }
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly { provider, webpki }))
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    fn webpki_verifier(&self, provider: Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
        WebPkiServerVerifier::builder_with_provider(Arc::new(self.root_store()?), provider)
            .build()
            .map_err(|error| TlsError::Setup(error.to_string()))
    }

    fn root_store(&self) -> Result<RootCertStore, TlsError> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Roots::File(path) => {
                let certificates = read_pem_certificates(path)?;
                let (added, _ignored) = store.add_parsable_certificates(certificates);
                if added == 0 {
                    return Err(TlsError::RootCertificate {
                        path: path.clone(),
                        reason: "no usable CA certificate in the file".into(),
                    });
                }
            }
            Roots::System => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _ignored) = store.add_parsable_certificates(native.certs);
                if added == 0 {
                    tracing::debug!(errors = ?native.errors, "no system CA certificates; using Mozilla's roots");
                    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
            }
        }
        Ok(store)
    }
}

fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let unreadable = |reason: String| TlsError::RootCertificate {
        path: path.to_path_buf(),
        reason,
    };
    CertificateDer::pem_file_iter(path)
        .map_err(|error| unreadable(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| unreadable(error.to_string()))
}

/// A parsed `DATABASE_URL`: tokio-postgres' settings, and the TLS policy.
pub struct ConnectionSettings {
    pub config: tokio_postgres::Config,
    pub tls: TlsPolicy,
}

impl ConnectionSettings {
    /// Parses a libpq URL (`postgres://…?sslmode=verify-full`) or `key=value` string. The error
    /// never contains the connection string (it may hold a password).
    pub fn parse(url: &str) -> Result<ConnectionSettings, TlsError> {
        let (rest, options) = take_tls_options(url)?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|error: tokio_postgres::Error| TlsError::Invalid(error.to_string()))?;
        let tls = TlsPolicy::from_options(options.sslmode.as_deref(), options.sslrootcert.as_deref())?;
        let only_unix_sockets =
            config.get_hosts().iter().all(|host| matches!(host, Host::Unix(_))) && !config.get_hosts().is_empty();
        config.ssl_mode(match tls.mode {
            _ if only_unix_sockets => TokioSslMode::Disable,
            SslMode::Disable => TokioSslMode::Disable,
            SslMode::Prefer => TokioSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => TokioSslMode::Require,
        });
        Ok(ConnectionSettings { config, tls })
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct TlsOptions {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsOptions {
    /// Keeps `value` if `key` is one of ours; says whether it was.
    fn take(&mut self, key: &str, value: String) -> bool {
        match key {
            "sslmode" => self.sslmode = Some(value),
            "sslrootcert" => self.sslrootcert = Some(value),
            _ => return false,
        }
        true
    }
}

/// Splits `sslmode` and `sslrootcert` off a connection string; the rest is returned as written.
fn take_tls_options(url: &str) -> Result<(String, TlsOptions), TlsError> {
    let mut options = TlsOptions::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_string(), options));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(key)?;
            if !options.take(&key, percent_decode(value)?) {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, options));
    }
    let mut kept = String::new();
    for (key, value, raw) in key_value_pairs(url)? {
        if !options.take(key, value) {
            kept.push_str(raw);
            kept.push(' ');
        }
    }
    Ok((kept.trim_end().to_string(), options))
}

fn percent_decode(text: &str) -> Result<String, TlsError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| TlsError::Invalid("a bad percent-escape in the URL's query".into()))?;
            out.push(hex);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TlsError::Invalid("the URL's query is not UTF-8".into()))
}

/// The `key = value` pairs of a libpq key/value string: (key, unquoted value, the raw text of
/// the pair). Values are bare words or single-quoted with backslash escapes, as in libpq.
fn key_value_pairs(text: &str) -> Result<Vec<(&str, String, &str)>, TlsError> {
    let malformed = || TlsError::Invalid("the key=value connection string is malformed".into());
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let start = rest;
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .ok_or_else(malformed)?;
        let key = &rest[..key_end];
        rest = rest[key_end..].trim_start();
        rest = rest.strip_prefix('=').ok_or_else(malformed)?.trim_start();
        let mut value = String::new();
        if let Some(quoted) = rest.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((index, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().ok_or_else(malformed)?.1),
                    '\'' => {
                        end = Some(index + 1);
                        break;
                    }
                    other => value.push(other),
                }
            }
            rest = &quoted[end.ok_or_else(malformed)?..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let mut chars = rest[..end].chars();
            while let Some(c) = chars.next() {
                value.push(if c == '\\' {
                    chars.next().ok_or_else(malformed)?
                } else {
                    c
                });
            }
            rest = &rest[end..];
        }
        let raw = &start[..start.len() - rest.len()];
        pairs.push((key, value, raw));
        rest = rest.trim_start();
    }
    Ok(pairs)
}

/// The server-certificate check of one policy. `webpki` is `None` for `prefer` and `require`
/// without a root certificate: encrypted, the server not authenticated (libpq's behaviour).
/// With it (`verify-ca`), the chain must lead to a trusted root while the name in the
/// certificate may differ from the host. The handshake signatures are checked either way.
#[derive(Debug)]
struct ChainOnly {
    provider: Arc<CryptoProvider>,
    webpki: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain first and the name last, so a name error means the chain is good.
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> (String, TlsOptions) {
        take_tls_options(url).unwrap()
    }

    #[test]
    fn url_options_are_taken_out_and_the_rest_kept_as_written() {
        let (rest, found) =
            options("postgres://u:p%40ss@db.example:5432/app?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(rest, "postgres://u:p%40ss@db.example:5432/app?application_name=x");
        assert_eq!(found.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(found.sslrootcert.as_deref(), Some("/etc/ca.pem"));

        let (rest, found) = options("postgresql://db.example/app?sslmode=require");
        assert_eq!(rest, "postgresql://db.example/app");
        assert_eq!(found.sslmode.as_deref(), Some("require"));

        let (rest, found) = options("postgres://db.example/app");
        assert_eq!(rest, "postgres://db.example/app");
        assert_eq!(found, TlsOptions::default());
    }

    #[test]
    fn key_value_options_are_taken_out_with_quotes_and_escapes() {
        let (rest, found) = options(
            "host=db.example  sslmode = verify-ca password='it\\'s' sslrootcert='/etc/my ca\\'s.pem' dbname=app",
        );
        assert_eq!(rest, "host=db.example password='it\\'s' dbname=app");
        assert_eq!(found.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(found.sslrootcert.as_deref(), Some("/etc/my ca's.pem"));
    }

    #[test]
    fn the_policy_follows_libpq() {
        let policy = |mode: Option<&str>, root: Option<&str>| TlsPolicy::from_options(mode, root);
        let expect = |mode, roots| TlsPolicy { mode, roots };
        assert_eq!(policy(None, None).unwrap(), expect(SslMode::Prefer, Roots::System));
        assert_eq!(
            policy(Some("disable"), None).unwrap(),
            expect(SslMode::Disable, Roots::System)
        );
        assert_eq!(
            policy(Some("require"), None).unwrap(),
            expect(SslMode::Require, Roots::System)
        );
        // A root certificate makes `require` check the chain.
        assert_eq!(
            policy(Some("require"), Some("/ca.pem")).unwrap(),
            expect(SslMode::VerifyCa, Roots::File("/ca.pem".into()))
        );
        assert_eq!(
            policy(Some("verify-full"), Some("/ca.pem")).unwrap(),
            expect(SslMode::VerifyFull, Roots::File("/ca.pem".into()))
        );
        assert_eq!(
            policy(None, Some("system")).unwrap(),
            expect(SslMode::VerifyFull, Roots::System)
        );
        assert!(policy(Some("require"), Some("system")).is_err());
        assert!(policy(Some("allow"), None).is_err());
        assert!(policy(Some("verify_full"), None).is_err());
    }

    #[test]
    fn errors_never_echo_the_connection_string() {
        for url in [
            "postgres://user:hunter2-secret@db.example:notaport/app",
            "postgres://user:hunter2-secret@db.example/app?sslmode=sometimes",
            "host=db.example password=hunter2-secret sslmode=maybe",
            "host=db.example password='hunter2-secret",
            "postgres://user:hunter2-secret@db.example/app?sslrootcert=%zz",
        ] {
            let error = ConnectionSettings::parse(url).err().expect("an invalid string");
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn tokio_postgres_gets_a_mode_it_knows() {
        let settings = ConnectionSettings::parse("postgres://db.example/app?sslmode=verify-full").unwrap();
        assert_eq!(settings.config.get_ssl_mode(), TokioSslMode::Require);
        assert_eq!(settings.tls.mode, SslMode::VerifyFull);
        let settings = ConnectionSettings::parse("postgres://db.example/app").unwrap();
        assert_eq!(settings.config.get_ssl_mode(), TokioSslMode::Prefer);
        // No TLS on Unix sockets, whatever the mode says (as libpq).
        let settings = ConnectionSettings::parse("host=/run/postgresql dbname=app sslmode=require").unwrap();
        assert_eq!(settings.config.get_ssl_mode(), TokioSslMode::Disable);
    }

    #[test]
    fn a_missing_root_certificate_file_is_a_clear_error() {
        let policy = TlsPolicy::from_options(Some("verify-full"), Some("/nonexistent/ca.pem")).unwrap();
        let error = policy.connector().err().expect("no such file");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }
}
