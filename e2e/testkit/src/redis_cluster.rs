//! A Redis Cluster of the test's own: six cluster-mode servers (three primaries with a
//! replica each) on free loopback ports, joined by `redis-cli --cluster create`. For the
//! failover tests: a primary can be killed (SIGKILL) and its replica takes over its
//! slots; the killed node can be started again and rejoins as a replica.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use platform::redis_connection::key_slot;

use crate::service::wait_for_port;
use crate::wait::until;
use crate::HOW_TO_START;

const NODES: usize = 6;
/// How long a primary may be silent before its replica takes over.
const NODE_TIMEOUT_MS: u32 = 1_000;

pub struct PrivateRedisCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
}

struct Node {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedisCluster {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("test-redis-cluster-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        let mut cluster = Self {
            dir,
            nodes: Vec::new(),
        };
        for _ in 0..NODES {
            let port = cluster_port();
            let child = cluster.launch(port);
            cluster.nodes.push(Node {
                port,
                child: Some(child),
            });
            wait_for_port(port, "cluster redis-server").await;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            created.status.success(),
            "cannot create the cluster: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        cluster.wait_healthy().await;
        cluster
    }

    fn launch(&self, port: u16) -> Child {
        let node_dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&node_dir).expect("node directory");
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--dir", &node_dir.display().to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run redis-server ({error}); {HOW_TO_START}"))
    }

    /// The seed nodes as `REDIS_URL` lists them (with `REDIS_CLUSTER`).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}/", node.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every running node says the cluster is ok and agrees on who serves
    /// every slot.
    pub async fn wait_healthy(&self) {
        until(
            "the Redis cluster ok on every node",
            Duration::from_secs(30),
            || async {
                let mut ok = true;
                for node in self.nodes.iter().filter(|node| node.child.is_some()) {
                    ok &= cli(node.port, &["cluster", "info"]).contains("cluster_state:ok");
                }
                ok.then_some(())
            },
        )
        .await;
    }

    /// The port of the primary that serves `key`'s slot now, as a live node sees it
    /// (`None` while a failover is under way).
    pub fn primary_of(&self, key: &str) -> Option<u16> {
        let slot = key_slot(key.as_bytes());
        let asking = self
            .nodes
            .iter()
            .find(|node| node.child.is_some())
            .expect("a live node");
        // CLUSTER NODES: one line per node, `id ip:port@bus flags master ... slots...`.
        let nodes = cli(asking.port, &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serving = fields.len() > 8
                && fields[2].contains("master")
                && !fields[2].contains("fail")
                && fields[8..].iter().any(|range| {
                    let (start, end) = range.split_once('-').unwrap_or((range, range));
                    match (start.parse::<u16>(), end.parse::<u16>()) {
                        (Ok(start), Ok(end)) => (start..=end).contains(&slot),
                        _ => false,
                    }
                });
            if serving {
                let address = fields[1].split('@').next().unwrap_or_default();
                let port = address.rsplit(':').next().unwrap_or_default();
                return port.parse().ok();
            }
        }
        None
    }

    /// SIGKILLs the node on `port` (its data is gone with it).
    pub fn kill(&mut self, port: u16) {
        let node = self.node(port);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node on `port` again: it rejoins from its nodes.conf, as a replica of
    /// whoever took its slots.
    pub async fn restart(&mut self, port: u16) {
        let child = self.launch(port);
        self.node(port).child = Some(child);
        wait_for_port(port, "restarted cluster redis-server").await;
        self.wait_healthy().await;
    }

    fn node(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of the cluster")
    }
}

impl Drop for PrivateRedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = crate::service::free_port();
        let bus_free =
            port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
        if bus_free {
            return port;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}
