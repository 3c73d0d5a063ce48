//! Any service's configuration for a test, and the service started in-process on a
//! port-0 listener, exactly as its binary would start it.

use std::future::Future;

use clap::{Args, Parser};
use contract::config::ServiceConfig;
use platform::http::HttpServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A service's settings as its binary parses them: flags, then the environment's
/// variables, then the defaults.
#[derive(Parser)]
pub struct Settings<C: Args> {
    #[command(flatten)]
    pub config: C,
}

/// `C` parsed from `args` (flags after the program name) and the environment.
pub fn parse<C: ServiceConfig>(args: &[String]) -> C {
    let program = std::iter::once("test".to_owned());
    Settings::<C>::parse_from(program.chain(args.iter().cloned())).config
}

/// A service's address for a test: loopback, port chosen by the OS.
pub fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("valid socket address")
}

/// A service started in-process on a port-0 listener.
pub struct RunningService {
    pub base_url: String,
    /// Where `/readyz` and `/metrics` are, when the service serves them apart.
    pub operations_url: Option<String>,
    pub shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl RunningService {
    /// Builds a service with a fresh shutdown token and serves it in the background.
    pub async fn start<F, Fut>(build: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<HttpServer>>,
    {
        let shutdown = CancellationToken::new();
        let server = build(shutdown.clone()).await.expect("build the service");
        let base_url = format!("http://{}", server.local_addr());
        let operations_url = server
            .operations_addr()
            .map(|address| format!("http://{address}"));
        let handle = tokio::spawn(server.run());
        Self {
            base_url,
            operations_url,
            shutdown,
            handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The value of an unlabelled metric on the service's `/metrics`, if it is there.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines().find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name).then(|| value.trim().parse().ok())?
        })
    }

    /// Signals shutdown and waits for the server to finish draining.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await?
    }

    /// Waits for the service to end by itself (a supervised task died), without
    /// signalling shutdown: what `run` returned.
    pub async fn finished(self) -> anyhow::Result<()> {
        self.handle.await?
    }
}

/// A free port on loopback, with its listener still bound (so nobody takes it).
pub fn reserve_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port")
}

/// A port free a moment ago, for a server the test starts itself.
pub fn free_port() -> u16 {
    reserve_port().local_addr().expect("address").port()
}
