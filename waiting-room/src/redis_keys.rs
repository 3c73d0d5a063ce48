//! The Redis key schema, defined once for all services.
//!
//! Every key starts with the deployment's prefix (`REDIS_KEY_PREFIX`), so several
//! deployments or test runs can share one Redis. Per-queue keys embed the Kafka
//! partition number, which is the queue's identity.

/// Builds the keys of one deployment.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Pattern matching every key of this deployment (for clean-up and SCAN).
    pub fn all_keys_pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_the_prefix() {
        let keys = RedisKeys::new("test-1");
        assert_eq!(keys.all_keys_pattern(), "test-1:*");
        assert_eq!(keys.prefix(), "test-1");
    }
}
