//! TLS for the tests that reach the dependencies securely: a certificate authority and
//! a server certificate for 127.0.0.1 generated per test (nothing is committed), and a
//! TLS-terminating forwarder that puts a plaintext server (Tansu, a service's HTTP
//! port) behind TLS the way a load balancer or a TLS listener would.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A test's own certificate authority and a certificate it signed for `127.0.0.1` and
/// `localhost`, as PEM files in a directory removed on drop.
pub struct TestCertificates {
    pub dir: PathBuf,
    /// The authority's certificate: what a client trusts.
    pub ca_file: PathBuf,
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
}

impl TestCertificates {
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!("wr-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");

        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "waiting-room test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");

        let server_key = KeyPair::generate().expect("server key");
        let server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server params");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("sign the server certificate");

        let certificates = Self {
            ca_file: dir.join("ca.pem"),
            server_cert_file: dir.join("server.pem"),
            server_key_file: dir.join("server.key"),
            dir,
        };
        std::fs::write(&certificates.ca_file, ca_cert.pem()).expect("write ca.pem");
        std::fs::write(&certificates.server_cert_file, server_cert.pem())
            .expect("write server.pem");
        std::fs::write(&certificates.server_key_file, server_key.serialize_pem())
            .expect("write server.key");
        certificates
    }

    /// Lets `owner` (a server run as another user, e.g. PostgreSQL) read the files; the
    /// key stays private to it, as servers demand.
    pub fn give_to(&self, uid: u32, gid: u32) {
        use std::os::unix::fs::PermissionsExt;
        for path in [
            &self.dir,
            &self.ca_file,
            &self.server_cert_file,
            &self.server_key_file,
        ] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
        }
        std::fs::set_permissions(
            &self.server_key_file,
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod the key");
    }

    fn acceptor(&self) -> TlsAcceptor {
        platform::tls::install_crypto_provider();
        let chain = CertificateDer::pem_file_iter(&self.server_cert_file)
            .expect("read server.pem")
            .collect::<Result<Vec<_>, _>>()
            .expect("server.pem");
        let key = PrivateKeyDer::from_pem_file(&self.server_key_file).expect("server.key");
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("TLS server settings");
        TlsAcceptor::from(Arc::new(config))
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Accepts TLS on a port of its own and forwards the plaintext to `upstream`; stops
/// when dropped.
pub struct TlsForwarder {
    pub port: u16,
    stop: CancellationToken,
}

impl TlsForwarder {
    /// Listens on `listener` (bound by the caller, so a broker can be told the port
    /// it is advertised on before it starts).
    pub fn start(
        listener: std::net::TcpListener,
        upstream: String,
        certs: &TestCertificates,
    ) -> Self {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let port = listener.local_addr().expect("address").port();
        let (acceptor, stop) = (certs.acceptor(), CancellationToken::new());
        let stopping = stop.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    () = stopping.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                };
                let (acceptor, upstream, stopping) =
                    (acceptor.clone(), upstream.clone(), stopping.clone());
                tokio::spawn(async move {
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return; // a client that does not speak TLS is dropped
                    };
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        () = stopping.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Self { port, stop }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsForwarder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
