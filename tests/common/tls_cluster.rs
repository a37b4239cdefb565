#![allow(dead_code)]
//! A second private PostgreSQL for the TLS tests: `ssl=on` with a certificate for `localhost`
//! signed by a CA made at test time (rcgen; no key is committed), listening on a loopback port,
//! and a `pg_hba.conf` that admits TCP clients only over TLS. Also a second, unrelated CA, for
//! the "unknown CA" cases. One per test process.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use model_lens_sync::store::embedded::{EmbeddedPostgres, ServerOptions};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::sync::OnceCell;

use crate::common::worker::free_port;

pub struct TlsCluster {
    cluster: EmbeddedPostgres,
    pub port: u16,
    /// The CA that signed the server's certificate (PEM).
    pub ca_file: PathBuf,
    /// A CA that signed nothing of this server (PEM).
    pub other_ca_file: PathBuf,
}

static TLS_CLUSTER: OnceCell<TlsCluster> = OnceCell::const_new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl TlsCluster {
    /// The process's TLS cluster, started on first use.
    pub async fn get() -> &'static TlsCluster {
        TLS_CLUSTER.get_or_init(TlsCluster::start).await
    }

    async fn start() -> TlsCluster {
        let root = std::env::temp_dir().join("model-lens-tests");
        remove_stale(&root, "tls-");
        let base = root.join(format!("tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let certs = base.join("certs");
        std::fs::create_dir_all(&certs).expect("create the certificate folder");
        for dir in [&base, &certs] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let files = write_certificates(&certs);
        let hba = certs.join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .expect("write pg_hba.conf");
        hand_to_server_account(&[&files.server_cert, &files.server_key, &hba]);
        let port = free_port();
        let path = |file: &Path| file.to_string_lossy().to_string();
        let options = ServerOptions {
            tcp_port: Some(port),
            settings: vec![
                ("ssl".into(), "on".into()),
                ("ssl_cert_file".into(), path(&files.server_cert)),
                ("ssl_key_file".into(), path(&files.server_key)),
                ("hba_file".into(), path(&hba)),
            ],
        };
        let cluster = EmbeddedPostgres::start_with(&base.join("cluster"), None, &options)
            .await
            .unwrap_or_else(|error| panic!("the TLS test PostgreSQL did not start: {error}"));
        TlsCluster {
            cluster,
            port,
            ca_file: files.ca,
            other_ca_file: files.other_ca,
        }
    }

    /// A fresh database on the TLS cluster; returns its name.
    pub async fn create_database(&self) -> String {
        let name = format!(
            "mls_tls_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let (client, connection) = tokio_postgres::connect(&self.cluster.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the TLS cluster over its socket");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the database");
        name
    }

    /// `postgres://postgres@HOST:PORT/DBNAME?QUERY`.
    pub fn url(&self, host: &str, dbname: &str, query: &str) -> String {
        let url = format!("postgres://postgres@{host}:{}/{dbname}", self.port);
        if query.is_empty() {
            url
        } else {
            format!("{url}?{query}")
        }
    }
}

struct CertificateFiles {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("a CA key");
    CertifiedIssuer::self_signed(params, key).expect("a self-signed CA")
}

fn write_certificates(dir: &Path) -> CertificateFiles {
    let ca = new_ca("model-lens test CA");
    let other_ca = new_ca("model-lens unrelated CA");
    // Valid for the name `localhost` only: connecting to 127.0.0.1 is a name mismatch.
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("server parameters");
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().expect("a server key");
    let server_cert = params.signed_by(&server_key, &ca).expect("the server certificate");
    let files = CertificateFiles {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    std::fs::write(&files.ca, ca.pem()).expect("write ca.pem");
    std::fs::write(&files.other_ca, other_ca.pem()).expect("write other-ca.pem");
    std::fs::write(&files.server_cert, server_cert.pem()).expect("write server.pem");
    std::fs::write(&files.server_key, server_key.serialize_pem()).expect("write server.key");
    // PostgreSQL refuses a key that others can read.
    std::fs::set_permissions(&files.server_key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    files
}

/// As root the server runs as `postgres`, which must own its key (mode 0600).
fn hand_to_server_account(files: &[&Path]) {
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    let account = nix::unistd::User::from_name("postgres")
        .expect("read the user database")
        .expect("the postgres account exists");
    for file in files {
        nix::unistd::chown(*file, Some(account.uid), Some(account.gid)).expect("chown to postgres");
    }
}

/// Folders `<prefix><pid>` of test processes that are gone.
fn remove_stale(root: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix(prefix).and_then(|pid| pid.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
