//! The Kafka record written for every ticket, and its parsing.
//!
//! Key: the event id. Value: JSON with a `version`, so the format can evolve; a record
//! that does not parse, or has a version this build does not know, is a poison record
//! (the activator dead-letters it rather than stalling the queue).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The record format version this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    pub version: u32,
    pub ticket_id: Uuid,
    pub event_id: String,
    pub user_id: Option<String>,
    pub issued_at: DateTime<Utc>,
}

/// Why a record cannot be processed (recorded with its dead letter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record has no value")]
    Empty,
    #[error("record is not a valid ticket record: {0}")]
    Invalid(String),
    #[error("unknown record version {0}")]
    UnknownVersion(u64),
}

impl TicketRecord {
    pub fn new(
        ticket_id: Uuid,
        event_id: String,
        user_id: Option<String>,
        issued_at: DateTime<Utc>,
    ) -> Self {
        Self {
            version: RECORD_VERSION,
            ticket_id,
            event_id,
            user_id,
            issued_at,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("ticket records serialize")
    }

    pub fn parse(value: Option<&[u8]>) -> Result<Self, RecordError> {
        let value = value.ok_or(RecordError::Empty)?;
        let json: serde_json::Value = serde_json::from_slice(value)
            .map_err(|error| RecordError::Invalid(error.to_string()))?;
        match json.get("version").and_then(serde_json::Value::as_u64) {
            Some(version) if version == u64::from(RECORD_VERSION) => {}
            Some(version) => return Err(RecordError::UnknownVersion(version)),
            None => return Err(RecordError::Invalid("missing version".into())),
        }
        serde_json::from_value(json).map_err(|error| RecordError::Invalid(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = TicketRecord::new(Uuid::now_v7(), "e1".into(), Some("u1".into()), Utc::now());
        assert_eq!(TicketRecord::parse(Some(&record.to_json())), Ok(record));
    }

    #[test]
    fn poison_records_are_classified() {
        assert_eq!(TicketRecord::parse(None), Err(RecordError::Empty));
        assert!(matches!(
            TicketRecord::parse(Some(b"not json")),
            Err(RecordError::Invalid(_))
        ));
        assert_eq!(
            TicketRecord::parse(Some(br#"{"version": 9}"#)),
            Err(RecordError::UnknownVersion(9))
        );
        assert!(matches!(
            TicketRecord::parse(Some(br#"{"version": 1, "event_id": "e"}"#)),
            Err(RecordError::Invalid(_))
        ));
    }
}
