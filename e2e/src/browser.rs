//! Headless Chromium driven over WebDriver (`chromedriver` + `fantoccini`), for tests
//! of the fan's pages. `deploy/local.sh test` installs Debian's `chromium` and
//! `chromium-driver` when they are missing; without them these tests fail and say so.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

const INSTALL_HINT: &str =
    "install Debian's chromium and chromium-driver (deploy/local.sh test does it)";

pub struct Browser {
    pub client: Client,
    driver: Child,
    screenshots: PathBuf,
}

impl Browser {
    /// A fresh headless browser with a phone-sized window; screenshots go to
    /// `test-output/<test>/` at the workspace root (git-ignored).
    pub async fn start(test: &str) -> Self {
        Self::start_in(test, "en-US").await
    }

    /// [`Browser::start`] for a fan whose browser asks for `language` first
    /// (`Accept-Language` and the JavaScript locale).
    pub async fn start_in(test: &str, language: &str) -> Self {
        Self::launch(test, language, "412,915").await
    }

    /// A fresh headless browser with a desktop-sized window (the operators' console).
    pub async fn start_desktop(test: &str) -> Self {
        Self::launch(test, "en-US", "1280,1600").await
    }

    async fn launch(test: &str, language: &str, window: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let driver_binary =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let driver = Command::new(&driver_binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {driver_binary} ({error}); {INSTALL_HINT}"));
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-background-networking",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={window}"),
                    format!("--lang={language}"),
                    format!("--accept-lang={language}"),
                ],
                "prefs": {"intl.accept_languages": language},
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut attempts = 0;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                // The driver needs a moment before it listens.
                Err(_) if attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("cannot start a Chromium session ({error}); {INSTALL_HINT}"),
            }
        };
        let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("test-output")
            .join(test);
        std::fs::create_dir_all(&screenshots).expect("create the screenshot directory");
        Self {
            client,
            driver,
            screenshots,
        }
    }

    /// Saves a PNG of the page as `<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("take a screenshot");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// How long the page helpers wait for something to appear.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The text of `css`; panics when it is not on the page.
pub async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("{css} not on the page: {error}"))
        .text()
        .await
        .unwrap_or_default()
}

/// Whether `css` is on the page and shown.
pub async fn displayed(client: &Client, css: &str) -> bool {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Clicks `css`; panics when it is not on the page.
pub async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("{css} not on the page: {error}"))
        .click()
        .await
        .unwrap_or_else(|error| panic!("cannot click {css}: {error}"));
}

/// Polls until `css` is displayed.
pub async fn wait_displayed(client: &Client, css: &str) {
    let started = Instant::now();
    while !displayed(client, css).await {
        assert!(started.elapsed() < PATIENCE, "{css} never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Types `value` into the input `css` after clearing it.
pub async fn fill(client: &Client, css: &str, value: &str) {
    let input = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("{css} not on the page: {error}"));
    input.clear().await.expect("clear the input");
    input
        .send_keys(value)
        .await
        .unwrap_or_else(|error| panic!("cannot type into {css}: {error}"));
}
