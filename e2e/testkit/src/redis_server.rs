//! A Redis server of the test's own, for tests that make Redis fail: paused (SIGSTOP),
//! it keeps its connections and data but answers nothing, as an overloaded or
//! partitioned Redis does; resumed (SIGCONT), it runs what queued up meanwhile. Or one
//! that serves only TLS and only an ACL user, for the tests of secured connections.

use contract::config::CommonConfig;

use crate::service::{free_port, wait_for_port};
use crate::tls::TestCertificates;
use crate::HOW_TO_START;

pub struct PrivateRedis {
    pub port: u16,
    url: String,
    child: std::process::Child,
}

/// The ACL user of [`PrivateRedis::start_tls`] (the default user is switched off).
pub const TLS_REDIS_USER: (&str, &str) = ("waiting-room", "s3cret-for-tests");

impl PrivateRedis {
    pub async fn start() -> Self {
        let port = free_port();
        Self::launch(
            port,
            format!("redis://127.0.0.1:{port}/"),
            &["--port".into(), port.to_string()],
        )
        .await
    }

    /// Serves TLS only, with a certificate `certs`' authority signed, to the ACL user
    /// [`TLS_REDIS_USER`] only.
    pub async fn start_tls(certs: &TestCertificates) -> Self {
        let port = free_port();
        let (user, password) = TLS_REDIS_USER;
        let path = |file: &std::path::Path| file.display().to_string();
        Self::launch(
            port,
            format!("rediss://{user}:{password}@127.0.0.1:{port}/"),
            &[
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                path(&certs.server_cert_file),
                "--tls-key-file".into(),
                path(&certs.server_key_file),
                "--tls-ca-cert-file".into(),
                path(&certs.ca_file),
                "--tls-auth-clients".into(),
                "no".into(),
                "--user".into(),
                "default".into(),
                "off".into(),
                "--user".into(),
                user.into(),
                "on".into(),
                format!(">{password}"),
                "~*".into(),
                "&*".into(),
                "+@all".into(),
            ],
        )
        .await
    }

    async fn launch(port: u16, url: String, args: &[String]) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(args)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run redis-server ({error}); {HOW_TO_START}"));
        // Owned before waiting: a server that never listens is killed on the panic.
        let redis = Self { port, url, child };
        wait_for_port(port, "private redis-server").await;
        redis
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Points `common` at this server: a single one, even when the environment's Redis
    /// is a cluster.
    pub fn configure(&self, common: &mut CommonConfig) {
        common.redis_url = self.url();
        common.redis_cluster = false;
    }

    /// Stops answering (the process is suspended); connections stay open.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
