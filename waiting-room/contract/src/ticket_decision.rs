//! The activator's decisions about tickets, made durable: which ticket was let in or
//! given up as abandoned, when, in which queue.
//!
//! The activation step writes each decision into the queue's journal in Redis (a list,
//! in the same atomic script as the decision itself, one [`JournalLine`] per ticket);
//! the activator then publishes the journal to the decisions topic and trims what the
//! broker acknowledged. A crash between the two publishes the rest at the next tick, so
//! a decision reaches Kafka at least once: readers keep the first decision per ticket
//! (a ticket is decided once). The post-sale report reads the topic, not Redis.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the activator decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Activated,
    Abandoned,
}

impl Outcome {
    /// The journal's letter for it.
    pub const fn letter(self) -> &'static str {
        match self {
            Self::Activated => "a",
            Self::Abandoned => "x",
        }
    }

    fn from_letter(letter: &str) -> Option<Self> {
        match letter {
            "a" => Some(Self::Activated),
            "x" => Some(Self::Abandoned),
            _ => None,
        }
    }
}

/// One decision about one ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub ticket_id: Uuid,
    pub queue_number: i64,
    pub outcome: Outcome,
    /// When it was decided (ms since the epoch).
    pub at_ms: i64,
    /// The end of the session it opened (ms since the epoch), for an activation: what
    /// recovery after a Redis data loss restores (absent in records written before it
    /// was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_until_ms: Option<i64>,
}

/// A journal line as the activation script writes it:
/// `{letter}|{ticket_id}|{event_id}|{queue_number}|{at_ms}`, and `|{active_until_ms}`
/// after an activation's.
pub struct JournalLine;

impl JournalLine {
    /// Parses a line into the event it belongs to and the decision; `None` for a line
    /// that is not one (never written by the script; skipped, not fatal).
    pub fn parse(line: &str) -> Option<(String, Decision)> {
        let mut fields = line.splitn(6, '|');
        let outcome = Outcome::from_letter(fields.next()?)?;
        let ticket_id = fields.next()?.parse().ok()?;
        let event_id = fields.next()?.to_owned();
        let queue_number = fields.next()?.parse().ok()?;
        let at_ms = fields.next()?.parse().ok()?;
        let active_until_ms = match fields.next() {
            Some(until) => Some(until.parse().ok()?),
            None => None,
        };
        Some((
            event_id,
            Decision {
                ticket_id,
                queue_number,
                outcome,
                at_ms,
                active_until_ms,
            },
        ))
    }
}

/// A record of the decisions topic: decisions of one event's tickets in one queue, in
/// the order they were made. JSON, keyed by the event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub event_id: String,
    pub partition: i32,
    pub decisions: Vec<Decision>,
}

/// Decisions in one record at most (a record stays far below the broker's size limit).
pub const DECISIONS_PER_RECORD: usize = 1_000;

impl DecisionRecord {
    /// Groups journal lines of `partition` into records: one per event per run of at
    /// most [`DECISIONS_PER_RECORD`], in journal order. Unreadable lines are dropped.
    pub fn from_journal(partition: i32, lines: &[String]) -> Vec<Self> {
        let mut records: Vec<Self> = Vec::new();
        for (event_id, decision) in lines.iter().filter_map(|line| JournalLine::parse(line)) {
            match records
                .iter_mut()
                .rev()
                .find(|record| record.event_id == event_id)
            {
                Some(record) if record.decisions.len() < DECISIONS_PER_RECORD => {
                    record.decisions.push(decision);
                }
                _ => records.push(Self {
                    event_id,
                    partition,
                    decisions: vec![decision],
                }),
            }
        }
        records
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn parse(payload: &[u8]) -> Option<Self> {
        serde_json::from_slice(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICKET: &str = "0193a5c9-02d4-7c3e-a1f0-5b8e2d7c6a10";

    #[test]
    fn journal_lines_parse_and_anything_else_is_skipped() {
        let (event, decision) =
            JournalLine::parse(&format!("a|{TICKET}|gig|42|1700000000000")).expect("a line");
        assert_eq!(event, "gig");
        assert_eq!(decision.outcome, Outcome::Activated);
        assert_eq!(decision.queue_number, 42);
        assert_eq!(decision.at_ms, 1_700_000_000_000);
        assert_eq!(decision.ticket_id.to_string(), TICKET);
        assert_eq!(decision.active_until_ms, None);
        let (_, activation) =
            JournalLine::parse(&format!("a|{TICKET}|gig|42|1700000000000|1700000060000"))
                .expect("an activation's line");
        assert_eq!(activation.active_until_ms, Some(1_700_000_060_000));
        for bad in [
            "",
            "a",
            &format!("z|{TICKET}|gig|42|1"),
            "a|not-a-uuid|gig|42|1",
            &format!("a|{TICKET}|gig|x|1"),
            &format!("a|{TICKET}|gig|42"),
            &format!("a|{TICKET}|gig|42|1|soon"),
        ] {
            assert!(JournalLine::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn journal_lines_group_by_event_in_order_and_bounded() {
        let line = |letter: &str, event: &str, qn: i64| format!("{letter}|{TICKET}|{event}|{qn}|5");
        let lines = vec![
            line("a", "gig", 1),
            line("x", "other", 2),
            line("a", "gig", 3),
            "garbage".to_owned(),
        ];
        let records = DecisionRecord::from_journal(7, &lines);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].event_id, "gig");
        assert_eq!(records[0].partition, 7);
        let numbers: Vec<i64> = records[0]
            .decisions
            .iter()
            .map(|d| d.queue_number)
            .collect();
        assert_eq!(numbers, [1, 3]);
        assert_eq!(records[1].decisions[0].outcome, Outcome::Abandoned);
        let many: Vec<String> = (0..2_500).map(|qn| line("a", "gig", qn)).collect();
        let records = DecisionRecord::from_journal(0, &many);
        let sizes: Vec<usize> = records.iter().map(|r| r.decisions.len()).collect();
        assert_eq!(sizes, [1_000, 1_000, 500]);
        let round_trip = DecisionRecord::parse(&records[2].to_json()).expect("JSON");
        assert_eq!(round_trip, records[2]);
    }
}
