//! Client certificates (mTLS): with `--tls-client-ca`, a certificate issued
//! by that CA logs the client in as the API key named by its subject common
//! name; clients without a certificate still log in with CONNECT
//! credentials; a certificate from another CA fails the handshake.

mod common;

use std::path::Path;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

struct Pki {
    dir: std::path::PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write PEM");
}

/// A CA (`ca.pem`), a server certificate for localhost (`srv.pem`,
/// `srv.key`), and client certificates with common name `cn` (`cli.pem`,
/// `cli.key`) and from an unrelated CA (`rogue.pem`, `rogue.key`).
fn make_pki(cn: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("tern-mtls-{}-{cn}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let k = KeyPair::generate().expect("key");
        let c = p.self_signed(&k).expect("CA cert");
        (p, k, c)
    };
    let (ca_params, ca_key, ca_cert) = ca("tern test CA");
    write(&dir, "ca.pem", &ca_cert.pem());
    let issuer = Issuer::new(ca_params, ca_key);

    let mut srv = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    srv.distinguished_name.push(DnType::CommonName, "localhost");
    let srv_key = KeyPair::generate().expect("key");
    let srv_cert = srv.signed_by(&srv_key, &issuer).expect("server cert");
    write(&dir, "srv.pem", &srv_cert.pem());
    write(&dir, "srv.key", &srv_key.serialize_pem());

    let client = |issuer: &Issuer<'_, KeyPair>, cert: &str, key: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let k = KeyPair::generate().expect("key");
        let c = p.signed_by(&k, issuer).expect("client cert");
        write(&dir, cert, &c.pem());
        write(&dir, key, &k.serialize_pem());
    };
    client(&issuer, "cli.pem", "cli.key");
    let (rogue_params, rogue_key, _) = ca("rogue CA");
    client(
        &Issuer::new(rogue_params, rogue_key),
        "rogue.pem",
        "rogue.key",
    );
    Pki { dir }
}

fn start(pki: &Pki) -> common::Tern {
    let d = |f: &str| pki.dir.join(f).to_string_lossy().into_owned();
    common::Tern::start(&[
        "--mqtts",
        "127.0.0.1:0",
        "--tls-cert",
        &d("srv.pem"),
        "--tls-key",
        &d("srv.key"),
        "--tls-client-ca",
        &d("ca.pem"),
        "--key",
        "app.k1:secret",
        "--sys-interval-secs",
        "0",
    ])
}

/// `mosquitto_pub` over TLS with optional client certificate and login;
/// returns its exit status code.
fn publish(
    t: &common::Tern,
    pki: &Pki,
    cert: Option<(&str, &str)>,
    login: Option<(&str, &str)>,
) -> i32 {
    let port = t.mqtts.expect("mqtts listener").port().to_string();
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "localhost", "-p", &port, "-t", "mtls/t", "-m", "x"])
        .arg("--cafile")
        .arg(pki.dir.join("ca.pem"));
    if let Some((c, k)) = cert {
        cmd.arg("--cert")
            .arg(pki.dir.join(c))
            .arg("--key")
            .arg(pki.dir.join(k));
    }
    if let Some((u, p)) = login {
        cmd.args(["-u", u, "-P", p]);
    }
    let out = cmd.output().expect("run mosquitto_pub");
    out.status.code().unwrap_or(-1)
}

#[test]
fn client_certificate_logs_in_as_the_key_named_by_its_common_name() {
    let pki = make_pki("app.k1");
    let t = start(&pki);
    assert_eq!(publish(&t, &pki, Some(("cli.pem", "cli.key")), None), 0);
    // Without a certificate and without credentials: refused (not authorised).
    assert_ne!(publish(&t, &pki, None, None), 0);
    // Without a certificate, key login over TLS still works.
    assert_eq!(publish(&t, &pki, None, Some(("app.k1", "secret"))), 0);
    // A certificate from another CA fails the TLS handshake; the server
    // keeps serving.
    assert_ne!(publish(&t, &pki, Some(("rogue.pem", "rogue.key")), None), 0);
    assert_eq!(publish(&t, &pki, Some(("cli.pem", "cli.key")), None), 0);
}

#[test]
fn client_certificate_for_an_unknown_key_is_refused() {
    let pki = make_pki("app.nobody");
    let t = start(&pki);
    assert_ne!(publish(&t, &pki, Some(("cli.pem", "cli.key")), None), 0);
    assert_eq!(publish(&t, &pki, None, Some(("app.k1", "secret"))), 0);
}
