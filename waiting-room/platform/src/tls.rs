//! TLS to the dependencies and to the key servers: one crypto provider for the whole
//! process, and the certificate authorities a deployment adds for servers whose
//! certificates a private CA signs (a self-hosted Redis, a JWKS behind an internal
//! gateway). PostgreSQL takes its own in `DATABASE_URL` (`sslmode`, `sslrootcert`), and
//! Kafka through librdkafka's settings.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// Makes rustls's ring provider the process default. Clients that do not name a
/// provider (the Redis client's TLS) find one only while exactly one is compiled into
/// rustls; naming it keeps that true if a dependency ever enables another. Calling it
/// again is harmless.
pub fn install_crypto_provider() {
    // Err only when a provider is installed already: the first one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The PEM certificates of `path`, read once at start so a missing file stops the
/// service with its name rather than failing every connection later.
pub fn read_ca_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the CA file {}", path.display()))?;
    anyhow::ensure!(
        pem.windows(27)
            .any(|window| window == b"-----BEGIN CERTIFICATE-----"),
        "the CA file {} holds no PEM certificate",
        path.display()
    );
    Ok(pem)
}

/// An HTTP client for what the services fetch themselves (JWKS, `verify-draw`'s
/// published event): https with the public roots, plus `extra_ca`'s certificates when
/// given; every request bounded by `timeout`.
pub fn https_client(timeout: Duration, extra_ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(path) = extra_ca {
        for certificate in reqwest::Certificate::from_pem_bundle(&read_ca_file(path)?)
            .with_context(|| format!("the CA file {} is not valid PEM", path.display()))?
        {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .context("cannot build the key-fetching HTTP client")
}
