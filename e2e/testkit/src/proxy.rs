//! HAProxy in front of several waiting-room and reservation instances, run with the
//! settings every deployment shares (`deploy/proxy/haproxy.cfg`: timeouts that suit live
//! streams, health checks on `/readyz`, X-Forwarded-For) plus the test's own servers, as
//! `INSTANCES=N deploy/local.sh up` runs it, on free loopback ports. Needs Debian's
//! `haproxy`, which `deploy/local.sh test` installs; nothing is installed here. Dropping
//! the proxy kills it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::service::{free_port, Endpoint};

/// The deployment's proxy settings, shared with `deploy/local.sh` and the Compose stack.
const SETTINGS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/proxy/haproxy.cfg"
);

/// Where the clients of one service connect to the proxy.
pub struct Frontend {
    base_url: String,
}

impl Endpoint for Frontend {
    fn base_url(&self) -> &str {
        &self.base_url
    }
}

pub struct Proxy {
    pub waiting_room: Frontend,
    pub reservation: Frontend,
    child: Child,
    /// The generated servers file and HAProxy's log (shown when it does not start).
    files: [PathBuf; 2],
}

impl Proxy {
    /// Starts HAProxy in front of `waiting_rooms` and `reservations` (`host:port` each);
    /// returns once both frontends answer `/readyz` with 200.
    pub async fn start(waiting_rooms: &[String], reservations: &[String]) -> Self {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        let servers = std::env::temp_dir().join(format!("haproxy-servers-{unique}.cfg"));
        let log = std::env::temp_dir().join(format!("haproxy-{unique}.log"));
        let config = format!(
            "{}\n{}",
            backend("waiting_room", "waiting-room", waiting_rooms),
            backend("reservation", "reservation", reservations)
        );
        std::fs::write(&servers, config).expect("write the proxy's servers");
        let waiting_room_port = free_port();
        let reservation_port = loop {
            let port = free_port();
            if port != waiting_room_port {
                break port;
            }
        };
        let child = Command::new("haproxy")
            .arg("-db")
            .args(["-f", SETTINGS, "-f"])
            .arg(&servers)
            .env(
                "WAITING_ROOM_PROXY_LISTEN",
                format!("127.0.0.1:{waiting_room_port}"),
            )
            .env(
                "RESERVATION_PROXY_LISTEN",
                format!("127.0.0.1:{reservation_port}"),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the proxy's log"))
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run haproxy ({error}): install Debian's haproxy (deploy/local.sh test does)")
            });
        // Owned before waiting: a proxy that never answers is killed on the panic.
        let mut proxy = Self {
            waiting_room: Frontend {
                base_url: format!("http://127.0.0.1:{waiting_room_port}"),
            },
            reservation: Frontend {
                base_url: format!("http://127.0.0.1:{reservation_port}"),
            },
            child,
            files: [servers, log],
        };
        proxy.wait_until_ready().await;
        proxy
    }

    async fn wait_until_ready(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("haproxy exited ({status}): {}", self.log());
            }
            let mut ready = true;
            for frontend in [&self.waiting_room, &self.reservation] {
                ready &= reqwest::get(frontend.url("/readyz"))
                    .await
                    .is_ok_and(|response| response.status() == 200);
            }
            if ready {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "haproxy did not pass /readyz through within 20 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What HAProxy wrote (servers going down and up, abnormal sessions).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.files[1]).unwrap_or_default()
    }
}

/// A backend section with the shared settings (the `proxy` defaults section): one
/// server per address, named `{name}-1`, `{name}-2`...
fn backend(section: &str, name: &str, addresses: &[String]) -> String {
    let servers: String = addresses
        .iter()
        .enumerate()
        .map(|(index, address)| format!("    server {name}-{} {address}\n", index + 1))
        .collect();
    format!("backend {section} from proxy\n{servers}")
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}
