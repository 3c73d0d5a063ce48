//! The services as child processes, for tests that run several instances and kill one
//! abruptly (SIGKILL). The child is this test binary itself, started again to run one
//! test, [`ENTRY_TEST`], which serves the service named in its environment: a test
//! cannot name another package's binaries (Cargo gives each only its own), nor build
//! them (Cargo holds the build lock while tests run). The child runs what the service's
//! `main` runs, its `build` and `run` with shutdown on SIGTERM and SIGINT, with settings
//! parsed from the flags passed in `E2E_SERVICE_ARGS` and the environment
//! ([`TestEnv::service_command`]).
//!
//! A test file that spawns services declares the entry point, under that name:
//!
//! ```ignore
//! #[test]
//! fn service_process() {
//!     support::process::serve_when_spawned();
//! }
//! ```

use std::process::Stdio;
use std::time::Duration;

use activator::ActivatorConfig;
use reservation::ReservationConfig;
use testkit::service::{self, Endpoint};
use testkit::TestEnv;
use tokio::io::{AsyncBufReadExt, BufReader};
use waiting_room::WaitingRoomConfig;

/// The test that serves in a child process (and does nothing in a test run).
pub const ENTRY_TEST: &str = "service_process";
const SERVICE_VARIABLE: &str = "E2E_SERVICE";
const ARGS_VARIABLE: &str = "E2E_SERVICE_ARGS";
/// The line a child prints once it listens, followed by its address.
const LISTENING: &str = "e2e service listening on ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    WaitingRoom,
    Activator,
    Reservation,
}

impl Service {
    const ALL: [Self; 3] = [Self::WaitingRoom, Self::Activator, Self::Reservation];

    pub fn name(self) -> &'static str {
        match self {
            Self::WaitingRoom => "waiting-room",
            Self::Activator => "activator",
            Self::Reservation => "reservation",
        }
    }
}

/// A service running in a child process; dropping it kills the process.
pub struct ServiceProcess {
    pub service: Service,
    /// `host:port` it listens on.
    pub address: String,
    base_url: String,
    child: tokio::process::Child,
}

impl ServiceProcess {
    /// Starts `service` for `env` with `args` (its flags; the listen address is port 0)
    /// and returns once it listens. Its log lines (`SERVICE_TEST_LOG`, default `warn`)
    /// are printed with the test's output.
    pub async fn spawn(env: &TestEnv, service: Service, args: &[String]) -> Self {
        let binary = std::env::current_exe().expect("the test binary's path");
        let mut args = args.to_vec();
        args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        let mut command: tokio::process::Command = env
            .service_command(binary.to_str().expect("a UTF-8 path"))
            .into();
        command
            .args([
                "--exact",
                ENTRY_TEST,
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(SERVICE_VARIABLE, service.name())
            .env(
                ARGS_VARIABLE,
                serde_json::to_string(&args).expect("encode the flags"),
            )
            .env(
                "RUST_LOG",
                std::env::var("SERVICE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn a service process");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let name = service.name();
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => match line.strip_prefix(LISTENING) {
                        Some(address) => return address.to_owned(),
                        None => echo(name, &line),
                    },
                    _ => panic!("the {name} process ended before it listened"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the {name} process did not listen within 60 s"));
        // Read on: a child writing into a full pipe would stop serving.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                echo(name, &line);
            }
        });
        Self {
            service,
            base_url: format!("http://{address}"),
            address,
            child,
        }
    }

    /// SIGKILL: the process ends at once, with whatever it held in memory.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL the service");
        self.child.wait().await.expect("reap the service");
    }

    /// SIGTERM, as an orchestrator stops it; panics unless it shuts down cleanly.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("the service is running");
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(signalled.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within 30 s", self.service.name()))
            .expect("wait for the service");
        assert!(
            status.success(),
            "{} did not stop cleanly: {status}",
            self.service.name()
        );
    }

    /// The value of an unlabelled metric (or one series, with its labels) on its
    /// `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        service::metric(&self.base_url, name).await
    }
}

/// Prints a child's log line with the test's output; the test harness's own lines in
/// the child (`running 1 test`, the result) are left out.
fn echo(name: &str, line: &str) {
    let harness = line.is_empty()
        || line == "."
        || line.starts_with("running 1 test")
        || line.starts_with("test result:");
    if !harness {
        eprintln!("{name}: {line}");
    }
}

impl Endpoint for ServiceProcess {
    fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// In a child spawned by [`ServiceProcess::spawn`]: serves until SIGTERM or SIGINT. In
/// a test run: returns at once.
pub fn serve_when_spawned() {
    let Ok(name) = std::env::var(SERVICE_VARIABLE) else {
        return;
    };
    let service = Service::ALL
        .into_iter()
        .find(|service| service.name() == name)
        .unwrap_or_else(|| panic!("no service named {name}"));
    let args: Vec<String> =
        serde_json::from_str(&std::env::var(ARGS_VARIABLE).expect("the service's flags"))
            .expect("the flags as a JSON list");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        platform::observability::init_tracing(platform::observability::LogFormat::Text);
        let shutdown = platform::shutdown::on_signals();
        let server = match service {
            Service::WaitingRoom => {
                waiting_room::build(service::parse::<WaitingRoomConfig>(&args), shutdown).await
            }
            Service::Activator => {
                activator::build(service::parse::<ActivatorConfig>(&args), shutdown).await
            }
            Service::Reservation => {
                reservation::build(service::parse::<ReservationConfig>(&args), shutdown).await
            }
        }
        .expect("build the service");
        println!("{LISTENING}{}", server.local_addr());
        server.run().await.expect("serve until shut down");
    });
}
