//! Any service's configuration for a test, and the service started in-process on a
//! port-0 listener, exactly as its binary would start it.

use std::future::Future;

use clap::{Args, Parser};
use contract::config::ServiceConfig;
use platform::http::HttpServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A service's settings as its binary parses them: flags, then the environment's
/// variables, then the defaults. A flag given twice takes its last value, so a test can
/// change one of a helper's flags by appending it.
#[derive(Parser)]
#[command(args_override_self = true)]
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

/// A loopback port that was free a moment ago, for a program that cannot listen on
/// port 0 and say which port it got (a private broker, Redis, a proxy).
pub fn free_port() -> u16 {
    reserve_port().local_addr().expect("address").port()
}

/// Waits until something listens on the loopback `port` (10 s at most).
pub async fn wait_for_port(port: u16, what: &str) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what} did not listen on port {port}");
}

/// Where a service answers HTTP: in-process, in a child process, or behind a proxy.
pub trait Endpoint: Sync {
    /// `http://host:port`, without a trailing slash.
    fn base_url(&self) -> &str;

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }
}

/// The value of an unlabelled metric (or of one series, named with its labels) on the
/// `/metrics` of the service at `base_url`, if it is there.
pub async fn metric(base_url: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base_url}/metrics"))
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
        Endpoint::url(self, path)
    }

    /// The value of an unlabelled metric on the service's `/metrics`, if it is there.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric(&self.base_url, name).await
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

impl Endpoint for RunningService {
    fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// A free port on loopback, with its listener still bound (so nobody takes it).
pub fn reserve_port() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port")
}
