//! How every Kafka client of a deployment reaches the brokers and what durability it
//! expects of them: the bootstrap addresses, TLS and SASL through librdkafka's own
//! settings, and the replication the topics are created with and must keep.
//!
//! Every producer, consumer and admin client starts from [`KafkaConnection::client`],
//! so a secured cluster is configured once, for all of them.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rdkafka::config::ClientConfig;

/// Where the brokers are, how to authenticate to them, and the replication the
/// deployment relies on (`acks=all` means as many copies as the topic has in sync).
#[derive(Debug, Clone, Args)]
pub struct KafkaConnection {
    /// Kafka bootstrap servers, comma separated.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// How clients talk to the brokers: plaintext, ssl (TLS), sasl_plaintext or
    /// sasl_ssl (SASL authentication over TLS; what a production cluster should use).
    #[arg(
        long = "kafka-security-protocol",
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        default_value_t = SecurityProtocol::Plaintext
    )]
    pub security_protocol: SecurityProtocol,

    /// SASL mechanism when the protocol is sasl_*: scram-sha-512, scram-sha-256 or plain.
    #[arg(
        long = "kafka-sasl-mechanism",
        env = "KAFKA_SASL_MECHANISM",
        value_enum,
        default_value_t = SaslMechanism::ScramSha512
    )]
    pub sasl_mechanism: SaslMechanism,

    /// SASL user name (required with sasl_plaintext and sasl_ssl).
    #[arg(long = "kafka-sasl-username", env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,

    /// SASL password (required with sasl_plaintext and sasl_ssl).
    #[arg(
        long = "kafka-sasl-password",
        env = "KAFKA_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,

    /// PEM file of the certificate authorities that sign the brokers' certificates;
    /// without it the system's trust store is used.
    #[arg(long = "kafka-ssl-ca-location", env = "KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<PathBuf>,

    /// Client certificate (PEM) for brokers that require mutual TLS.
    #[arg(
        long = "kafka-ssl-certificate-location",
        env = "KAFKA_SSL_CERTIFICATE_LOCATION",
        requires = "ssl_key_location"
    )]
    pub ssl_certificate_location: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(
        long = "kafka-ssl-key-location",
        env = "KAFKA_SSL_KEY_LOCATION",
        requires = "ssl_certificate_location"
    )]
    pub ssl_key_location: Option<PathBuf>,

    /// Copies of every partition: topics are created with this replication factor, and
    /// a service refuses to start when a topic it uses has fewer replicas (then
    /// `acks=all` would promise fewer copies than the operator planned for). The local
    /// single-broker stack sets 1.
    #[arg(long = "kafka-replication-factor", env = "KAFKA_REPLICATION_FACTOR",
          default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=32))]
    pub replication_factor: i32,

    /// The topics' `min.insync.replicas`: how many copies must have a record before
    /// an `acks=all` produce is acknowledged. At most the replication factor.
    #[arg(long = "kafka-min-insync-replicas", env = "KAFKA_MIN_INSYNC_REPLICAS",
          default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..=32))]
    pub min_insync_replicas: i32,
}

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// librdkafka's `sasl.mechanism` (SCRAM needs no external library; GSSAPI would).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "scram-sha-512")]
    ScramSha512,
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "plain")]
    Plain,
}

impl SaslMechanism {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::Plain => "PLAIN",
        }
    }
}

/// Settings that contradict each other, found before any client is built.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KafkaSettingsError {
    #[error("KAFKA_SECURITY_PROTOCOL={0} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")]
    MissingSaslCredentials(&'static str),
    #[error(
        "KAFKA_MIN_INSYNC_REPLICAS={min_insync} exceeds KAFKA_REPLICATION_FACTOR={replication}: \
         no produce with acks=all could ever be acknowledged"
    )]
    InsyncAboveReplication { min_insync: i32, replication: i32 },
    #[error("{0} is set but KAFKA_SECURITY_PROTOCOL does not use TLS (ssl or sasl_ssl)")]
    TlsFileWithoutTls(&'static str),
    #[error(
        "KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set but KAFKA_SECURITY_PROTOCOL \
         does not use SASL (sasl_plaintext or sasl_ssl): the credentials would be ignored"
    )]
    CredentialsWithoutSasl,
}

impl KafkaConnection {
    /// Plaintext to `brokers`, replication 1: a single local broker (tests, tools).
    pub fn local(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: SaslMechanism::ScramSha512,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            replication_factor: 1,
            min_insync_replicas: 1,
        }
    }

    /// Refuses contradictory settings with the variable to fix.
    pub fn validate(&self) -> Result<(), KafkaSettingsError> {
        let protocol = self.security_protocol;
        if protocol.uses_sasl() && (self.sasl_username.is_none() || self.sasl_password.is_none()) {
            return Err(KafkaSettingsError::MissingSaslCredentials(
                protocol.as_librdkafka(),
            ));
        }
        if !protocol.uses_sasl() && (self.sasl_username.is_some() || self.sasl_password.is_some()) {
            return Err(KafkaSettingsError::CredentialsWithoutSasl);
        }
        if self.min_insync_replicas > self.replication_factor {
            return Err(KafkaSettingsError::InsyncAboveReplication {
                min_insync: self.min_insync_replicas,
                replication: self.replication_factor,
            });
        }
        if !protocol.uses_tls() {
            for (name, set) in [
                ("KAFKA_SSL_CA_LOCATION", self.ssl_ca_location.is_some()),
                (
                    "KAFKA_SSL_CERTIFICATE_LOCATION",
                    self.ssl_certificate_location.is_some(),
                ),
            ] {
                if set {
                    return Err(KafkaSettingsError::TlsFileWithoutTls(name));
                }
            }
        }
        Ok(())
    }

    /// The settings every client starts from: where the brokers are, how to reach them
    /// securely, and TCP keepalive so a silently dead connection is noticed.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("socket.keepalive.enable", "true")
            .set("security.protocol", self.security_protocol.as_librdkafka());
        if self.security_protocol.uses_sasl() {
            config.set("sasl.mechanism", self.sasl_mechanism.as_librdkafka());
            if let Some(username) = &self.sasl_username {
                config.set("sasl.username", username);
            }
            if let Some(password) = &self.sasl_password {
                config.set("sasl.password", password);
            }
        }
        for (key, path) in [
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
        ] {
            if let Some(path) = path {
                config.set(key, path.to_string_lossy());
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        kafka: KafkaConnection,
    }

    /// The declared default of a setting (the environment the tests run in may set it).
    fn default_of(id: &str) -> String {
        let command = Flags::command();
        let argument = command
            .get_arguments()
            .find(|argument| argument.get_id() == id)
            .unwrap_or_else(|| panic!("no setting {id}"));
        argument.get_default_values()[0]
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn defaults_expect_three_copies_two_in_sync_and_plaintext() {
        assert_eq!(default_of("replication_factor"), "3");
        assert_eq!(default_of("min_insync_replicas"), "2");
        assert_eq!(default_of("security_protocol"), "plaintext");
        let config = KafkaConnection::local("broker:9092").client();
        assert_eq!(config.get("bootstrap.servers"), Some("broker:9092"));
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        assert_eq!(config.get("sasl.mechanism"), None);
    }

    #[test]
    fn sasl_over_tls_reaches_librdkafka() {
        let kafka = KafkaConnection {
            security_protocol: SecurityProtocol::from_str("sasl_ssl", false).expect("name"),
            sasl_mechanism: SaslMechanism::from_str("scram-sha-256", false).expect("name"),
            sasl_username: Some("wr".into()),
            sasl_password: Some("secret".into()),
            ssl_ca_location: Some("/etc/ca.pem".into()),
            ..KafkaConnection::local("broker:9093")
        };
        assert_eq!(kafka.validate(), Ok(()));
        let config = kafka.client();
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(config.get("sasl.username"), Some("wr"));
        assert_eq!(config.get("sasl.password"), Some("secret"));
        assert_eq!(config.get("ssl.ca.location"), Some("/etc/ca.pem"));
    }

    #[test]
    fn contradictory_settings_are_refused() {
        let local = || KafkaConnection::local("broker:9092");
        let sasl = KafkaConnection {
            security_protocol: SecurityProtocol::SaslSsl,
            ..local()
        };
        assert_eq!(
            sasl.validate(),
            Err(KafkaSettingsError::MissingSaslCredentials("sasl_ssl"))
        );
        let insync = KafkaConnection {
            min_insync_replicas: 2,
            ..local()
        };
        assert!(matches!(
            insync.validate(),
            Err(KafkaSettingsError::InsyncAboveReplication { .. })
        ));
        let ca = KafkaConnection {
            ssl_ca_location: Some("/etc/ca.pem".into()),
            ..local()
        };
        assert_eq!(
            ca.validate(),
            Err(KafkaSettingsError::TlsFileWithoutTls(
                "KAFKA_SSL_CA_LOCATION"
            ))
        );
        let credentials = KafkaConnection {
            security_protocol: SecurityProtocol::Ssl,
            sasl_password: Some("secret".into()),
            ..local()
        };
        assert_eq!(
            credentials.validate(),
            Err(KafkaSettingsError::CredentialsWithoutSasl)
        );
        for bad in [
            ["--kafka-replication-factor", "0"],
            ["--kafka-security-protocol", "tls"],
            ["--kafka-sasl-mechanism", "gssapi"],
        ] {
            assert!(
                Flags::try_parse_from(std::iter::once("test").chain(bad)).is_err(),
                "{bad:?} accepted"
            );
        }
    }
}
