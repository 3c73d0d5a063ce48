//! A Tansu broker of the test's own, for tests that stop and restart the broker or
//! reach it over TLS.

use std::time::Duration;

use contract::kafka_connection::KafkaConnection;

use crate::service::{free_port, reserve_port};
use crate::tls::{TestCertificates, TlsForwarder};

use crate::HOW_TO_START;

/// A Tansu broker of the test's own on a free port, for tests that stop the broker.
pub struct PrivateBroker {
    pub port: u16,
    /// The port clients are told to connect to (the broker's own, or a TLS listener's
    /// in front of it).
    advertised: u16,
    child: Option<std::process::Child>,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        let port = free_port();
        let mut broker = Self {
            port,
            advertised: port,
            child: None,
        };
        broker.restart().await;
        broker
    }

    /// A broker reachable only through TLS (`security.protocol=ssl`), signed by
    /// `certs`' authority: Tansu behind a TLS listener that it advertises as its own.
    pub async fn start_behind_tls(certs: &TestCertificates) -> (Self, TlsForwarder) {
        let tls_listener = reserve_port();
        let port = free_port();
        let mut broker = Self {
            port,
            advertised: tls_listener.local_addr().expect("address").port(),
            child: None,
        };
        let forwarder = TlsForwarder::start(tls_listener, format!("127.0.0.1:{port}"), certs);
        broker.restart().await;
        (broker, forwarder)
    }

    /// How a client reaches this broker (plaintext, one copy).
    pub fn connection(&self) -> KafkaConnection {
        KafkaConnection::local(format!("127.0.0.1:{}", self.port))
    }

    /// Starts (again) on the same port; the memory engine starts empty.
    pub async fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised);
        let child = std::process::Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run tansu ({error}); {HOW_TO_START}"));
        self.child = Some(child);
        crate::service::wait_for_port(self.port, "private tansu").await;
    }

    /// Kills the broker and waits until its port is closed.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
