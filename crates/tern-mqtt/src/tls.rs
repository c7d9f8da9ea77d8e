//! TLS for the MQTT (and HTTPS) listeners: rustls with the certificate and
//! key read from PEM files and reloaded when the files change, so a renewed
//! certificate takes effect without a restart. A reload that fails (a
//! half-written file, a key that does not match) keeps the previous pair
//! and logs why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading certificates from {path}: {reason}")]
    Certificates { path: PathBuf, reason: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("reading the private key from {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the key in {key} does not fit the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificates {
            path: cert.into(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.into() });
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.into(),
        reason: e.to_string(),
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, der, &provider).map_err(|e| TlsError::Mismatch {
        cert: cert.into(),
        key: key.into(),
        reason: e.to_string(),
    })
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Serves the current certificate; [`ReloadingCert::reload_if_changed`]
/// swaps it.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>, Option<SystemTime>)>,
    /// Modification times of a pair that failed to load: not retried (nor
    /// warned about again) until a file changes again.
    failed: RwLock<Option<(Option<SystemTime>, Option<SystemTime>)>>,
}

impl ReloadingCert {
    /// Loads the pair once; fails if it cannot.
    pub fn open(cert: &Path, key: &Path) -> Result<ReloadingCert, TlsError> {
        let ck = load(cert, key)?;
        Ok(ReloadingCert {
            cert_path: cert.into(),
            key_path: key.into(),
            current: RwLock::new((Arc::new(ck), modified(cert), modified(key))),
            failed: RwLock::new(None),
        })
    }

    /// Reloads when either file's modification time changed. Returns true
    /// if a new pair is now served.
    pub fn reload_if_changed(&self) -> bool {
        let (c, k) = (modified(&self.cert_path), modified(&self.key_path));
        {
            let cur = self.current.read();
            if cur.1 == c && cur.2 == k {
                return false;
            }
        }
        if *self.failed.read() == Some((c, k)) {
            return false;
        }
        match load(&self.cert_path, &self.key_path) {
            Ok(ck) => {
                *self.current.write() = (Arc::new(ck), c, k);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                *self.failed.write() = Some((c, k));
                tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the previous one");
                false
            }
        }
    }

    /// Checks the files every `every` for as long as the task lives.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.reload_if_changed();
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().0.clone())
    }
}

/// A TLS 1.2/1.3 server configuration serving `resolver`'s certificate,
/// offering `alpn` protocols (empty for none). With `client_ca`, clients
/// may present a certificate issued by that CA (verified; its subject
/// common name names the API key it logs in as); clients without one are
/// still accepted and authenticate in CONNECT.
pub fn server_config(
    resolver: Arc<ReloadingCert>,
    alpn: &[&[u8]],
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap_or_else(|_| unreachable!("the default provider supports TLS 1.2 and 1.3"));
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| TlsError::Certificates {
                    path: path.into(),
                    reason: e.to_string(),
                })?;
            for c in certs {
                roots.add(c).map_err(|e| TlsError::Certificates {
                    path: path.into(),
                    reason: e.to_string(),
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError::NoCertificate { path: path.into() });
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Certificates {
                path: path.into(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder.with_cert_resolver(resolver);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The subject common name of a (verified) client certificate: the key
/// name it maps to.
pub fn client_cert_key(conn: &rustls::ServerConnection) -> Option<String> {
    let der = conn.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
