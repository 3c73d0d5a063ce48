//! A Redis server of the test's own, for tests that make Redis fail: paused (SIGSTOP),
//! it keeps its connections and data but answers nothing, as an overloaded or
//! partitioned Redis does; resumed (SIGCONT), it runs what queued up meanwhile.

use crate::HOW_TO_START;

pub struct PrivateRedis {
    pub port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let port = crate::service::free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run redis-server ({error}); {HOW_TO_START}"));
        // Owned before waiting: a server that never listens is killed on the panic.
        let redis = Self { port, child };
        crate::service::wait_for_port(port, "private redis-server").await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
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
