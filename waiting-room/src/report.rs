//! The post-sale report: what happened to an event's fans, computed from Kafka (the
//! tickets, the activator's decisions, the dead letters) and PostgreSQL (reservations),
//! never from Redis, so it survives Redis losing everything. Stored in `event_reports`;
//! recomputing from the same records gives the same numbers.
//!
//! Computed when an event closes, on `POST /admin/events/{id}/report`, and by
//! `waiting-room report --event ID` (for a cron job, like a nightly batch).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use clap::Args;
use contract::config::CommonConfig;
use contract::ticket_decision::{DecisionRecord, Outcome};
use contract::ticket_record::TicketRecord;
use contract::topic_reader::{StoredRecord, TopicReader};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// The report of one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventReport {
    pub event_id: String,
    pub computed_at: DateTime<Utc>,
    /// Nobody waits and no session runs any more: computing again gives the same
    /// numbers. Until then (as when computed at the close, the line still draining) the
    /// report is provisional.
    pub complete: bool,
    pub totals: Totals,
    /// Seconds from join to active, over the activated tickets.
    pub wait_seconds: Percentiles,
    pub peak_queue_length: u64,
    pub peak_queue_at: Option<DateTime<Utc>>,
    pub conversion: Conversion,
    pub per_minute: Vec<Minute>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub joined: u64,
    pub activated: u64,
    pub abandoned: u64,
    /// Activated and bought (a confirmed reservation).
    pub used: u64,
    /// Activated, not bought, and past the end of their session.
    pub expired: u64,
    /// Activated, not bought, their session still running when computed.
    pub still_active: u64,
    /// Joined and not yet decided when computed.
    pub still_waiting: u64,
    /// Unreadable records of the event's queues while the event's tickets were in them.
    pub dead_lettered: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    /// Fans who held seats at least once.
    pub reserving_fans: u64,
    pub reservations_confirmed: u64,
    pub seats_sold: u64,
    /// `reserving_fans` / activated.
    pub reserved_share: Option<f64>,
    /// `used` / activated.
    pub bought_share: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Minute {
    pub minute: DateTime<Utc>,
    pub joined: u64,
    pub activated: u64,
    pub abandoned: u64,
    /// Joined and not yet decided at the end of the minute.
    pub queue_length: u64,
}

/// What the report reads, gathered from Kafka and PostgreSQL.
#[derive(Debug, Default)]
pub struct SaleRecords {
    /// Each ticket of the event: where and when it was issued.
    pub tickets: Vec<(Uuid, i32, i64, DateTime<Utc>)>,
    /// The first decision about each ticket: outcome and when (ms).
    pub decisions: HashMap<Uuid, (Outcome, i64)>,
    /// Dead letters: original partition and offset.
    pub dead_letters: Vec<(i32, i64)>,
    /// Tickets with a confirmed reservation.
    pub bought: Vec<Uuid>,
    pub reserving_fans: u64,
    pub reservations_confirmed: u64,
    pub seats_sold: u64,
}

impl SaleRecords {
    /// Reads everything about `event_id`: the topics in full, the reservations table.
    pub async fn read(
        common: &CommonConfig,
        postgres: &PgPool,
        event_id: &str,
    ) -> anyhow::Result<Self> {
        let (kafka, event) = (common.kafka.clone(), event_id.to_owned());
        let topics = [
            common.tickets_topic.clone(),
            common.decisions_topic.clone(),
            common.tickets_dlq_topic.clone(),
        ];
        // Only this event's tickets and decisions are kept while reading; the dead
        // letters name no event.
        let [tickets, decisions, dead_letters] = tokio::task::spawn_blocking(move || {
            let read = |topic: &str, keep: &dyn Fn(Option<&[u8]>) -> bool| {
                TopicReader::new(&kafka, topic)?.all(keep)
            };
            let ours = |payload: Option<&[u8]>| names_event(payload, &event);
            Ok::<_, anyhow::Error>([
                read(&topics[0], &ours)?,
                read(&topics[1], &ours)?,
                read(&topics[2], &|_| true)?,
            ])
        })
        .await??;
        let event = event_id;
        let mut records = Self {
            tickets: tickets
                .iter()
                .filter_map(|record| {
                    let ticket = TicketRecord::parse(record.payload.as_deref()).ok()?;
                    (ticket.event_id == event).then_some((
                        ticket.ticket_id,
                        record.partition,
                        record.offset,
                        ticket.issued_at,
                    ))
                })
                .collect(),
            // Published at least once: each original record counts once.
            dead_letters: dead_letters
                .iter()
                .filter_map(dead_letter_origin)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            ..Self::default()
        };
        // Published at least once: the first decision about a ticket is the one.
        for record in decisions
            .iter()
            .filter_map(|record| DecisionRecord::parse(record.payload.as_deref()?))
            .filter(|record| record.event_id == event)
        {
            for decision in record.decisions {
                records
                    .decisions
                    .entry(decision.ticket_id)
                    .or_insert((decision.outcome, decision.at_ms));
            }
        }
        let (reserving_fans, reservations_confirmed, seats_sold): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(DISTINCT ticket_id),
                    count(*) FILTER (WHERE status = 'confirmed'),
                    coalesce(sum(cardinality(seat_ids)) FILTER (WHERE status = 'confirmed'), 0)
             FROM reservations WHERE event_id = $1",
        )
        .bind(event_id)
        .fetch_one(postgres)
        .await?;
        records.bought = sqlx::query_scalar(
            "SELECT DISTINCT ticket_id FROM reservations WHERE event_id = $1 AND status = 'confirmed'",
        )
        .bind(event_id)
        .fetch_all(postgres)
        .await?;
        records.reserving_fans = u64::try_from(reserving_fans).unwrap_or(0);
        records.reservations_confirmed = u64::try_from(reservations_confirmed).unwrap_or(0);
        records.seats_sold = u64::try_from(seats_sold).unwrap_or(0);
        Ok(records)
    }
}

/// Whether a JSON payload's `event_id` is `event` (ticket and decision records both
/// carry one), without parsing the rest.
fn names_event(payload: Option<&[u8]>, event: &str) -> bool {
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        event_id: std::borrow::Cow<'a, str>,
    }
    payload
        .and_then(|payload| serde_json::from_slice::<Named<'_>>(payload).ok())
        .is_some_and(|named| named.event_id == event)
}

/// Where a dead letter came from (its JSON names the original partition and offset).
fn dead_letter_origin(record: &StoredRecord) -> Option<(i32, i64)> {
    let value: serde_json::Value = serde_json::from_slice(record.payload.as_deref()?).ok()?;
    Some((
        i32::try_from(value["partition"].as_i64()?).ok()?,
        value["offset"].as_i64()?,
    ))
}

/// The report from the records, as of `now`, with sessions of `active_ttl_seconds`.
pub fn compute(
    event_id: &str,
    records: &SaleRecords,
    now: DateTime<Utc>,
    active_ttl_seconds: i64,
) -> EventReport {
    let mut totals = Totals {
        joined: records.tickets.len() as u64,
        ..Totals::default()
    };
    let bought: std::collections::HashSet<&Uuid> = records.bought.iter().collect();
    let mut waits: Vec<f64> = Vec::new();
    // Queue length over time: +1 at each join, -1 at each decision.
    let mut changes: Vec<(i64, i64)> = Vec::new();
    let mut minutes: BTreeMap<i64, Minute> = BTreeMap::new();
    for (ticket_id, _, _, issued_at) in &records.tickets {
        let issued_ms = issued_at.timestamp_millis();
        changes.push((issued_ms, 1));
        bucket(&mut minutes, issued_ms).joined += 1;
        match records.decisions.get(ticket_id) {
            Some((Outcome::Activated, at_ms)) => {
                totals.activated += 1;
                changes.push((*at_ms, -1));
                bucket(&mut minutes, *at_ms).activated += 1;
                waits.push((at_ms - issued_ms).max(0) as f64 / 1000.0);
                if bought.contains(ticket_id) {
                    totals.used += 1;
                } else if at_ms + active_ttl_seconds * 1000 <= now.timestamp_millis() {
                    totals.expired += 1;
                } else {
                    totals.still_active += 1;
                }
            }
            Some((Outcome::Abandoned, at_ms)) => {
                totals.abandoned += 1;
                changes.push((*at_ms, -1));
                bucket(&mut minutes, *at_ms).abandoned += 1;
            }
            None => totals.still_waiting += 1,
        }
    }
    // A dead letter counts when it sits among the event's tickets in their queue.
    let mut spans: HashMap<i32, (i64, i64)> = HashMap::new();
    for (_, partition, offset, _) in &records.tickets {
        let span = spans.entry(*partition).or_insert((*offset, *offset));
        *span = (span.0.min(*offset), span.1.max(*offset));
    }
    totals.dead_lettered = records
        .dead_letters
        .iter()
        .filter(|(partition, offset)| {
            spans
                .get(partition)
                .is_some_and(|(first, last)| (*first..=*last).contains(offset))
        })
        .count() as u64;

    // Joins before decisions at the same instant: a ticket is in line before it leaves.
    changes.sort_by_key(|(at, change)| (*at, -change));
    let (mut length, mut peak, mut peak_at) = (0i64, 0i64, None);
    let mut ends = minutes
        .keys()
        .copied()
        .collect::<Vec<_>>()
        .into_iter()
        .peekable();
    let mut lengths: BTreeMap<i64, i64> = BTreeMap::new();
    for (at, change) in &changes {
        while let Some(minute) = ends.peek().copied().filter(|minute| minute + 60_000 <= *at) {
            lengths.insert(minute, length);
            ends.next();
        }
        length += change;
        if length > peak {
            peak = length;
            peak_at = Utc.timestamp_millis_opt(*at).single();
        }
    }
    for minute in ends {
        lengths.insert(minute, length);
    }
    for (minute, entry) in &mut minutes {
        entry.queue_length = u64::try_from(lengths.get(minute).copied().unwrap_or(0)).unwrap_or(0);
    }
    let activated = totals.activated;
    let share = |count: u64| (activated > 0).then(|| count as f64 / activated as f64);
    EventReport {
        event_id: event_id.to_owned(),
        computed_at: now,
        complete: totals.still_waiting == 0 && totals.still_active == 0,
        wait_seconds: percentiles(&mut waits),
        peak_queue_length: u64::try_from(peak).unwrap_or(0),
        peak_queue_at: peak_at,
        conversion: Conversion {
            reserving_fans: records.reserving_fans,
            reservations_confirmed: records.reservations_confirmed,
            seats_sold: records.seats_sold,
            reserved_share: share(records.reserving_fans),
            bought_share: share(totals.used),
        },
        totals,
        per_minute: minutes.into_values().collect(),
    }
}

/// The minute (its start, in ms) `ms` falls in.
fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000) * 60_000
}

/// The per-minute entry for the minute of `ms`.
fn bucket(minutes: &mut BTreeMap<i64, Minute>, ms: i64) -> &mut Minute {
    minutes.entry(minute_of(ms)).or_insert_with(|| Minute {
        minute: Utc
            .timestamp_millis_opt(minute_of(ms))
            .single()
            .unwrap_or_default(),
        ..Minute::default()
    })
}

/// Nearest-rank percentiles.
fn percentiles(values: &mut [f64]) -> Percentiles {
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        if values.is_empty() {
            return None;
        }
        let index = ((p / 100.0) * values.len() as f64).ceil() as usize;
        values.get(index.clamp(1, values.len()) - 1).copied()
    };
    Percentiles {
        p50: rank(50.0),
        p90: rank(90.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: values.last().copied(),
    }
}

impl EventReport {
    /// The report as CSV: the totals as `metric,value` rows, then the per-minute series.
    pub fn to_csv(&self) -> String {
        let t = &self.totals;
        let mut csv = String::from("metric,value\n");
        let optional = |value: Option<f64>| value.map(|v| format!("{v:.3}")).unwrap_or_default();
        for (name, value) in [
            ("joined", t.joined.to_string()),
            ("activated", t.activated.to_string()),
            ("abandoned", t.abandoned.to_string()),
            ("used", t.used.to_string()),
            ("expired", t.expired.to_string()),
            ("still_active", t.still_active.to_string()),
            ("still_waiting", t.still_waiting.to_string()),
            ("dead_lettered", t.dead_lettered.to_string()),
            ("peak_queue_length", self.peak_queue_length.to_string()),
            ("wait_p50_seconds", optional(self.wait_seconds.p50)),
            ("wait_p95_seconds", optional(self.wait_seconds.p95)),
            ("wait_p99_seconds", optional(self.wait_seconds.p99)),
            ("wait_max_seconds", optional(self.wait_seconds.max)),
            ("reserving_fans", self.conversion.reserving_fans.to_string()),
            (
                "reservations_confirmed",
                self.conversion.reservations_confirmed.to_string(),
            ),
            ("seats_sold", self.conversion.seats_sold.to_string()),
        ] {
            csv.push_str(&format!("{name},{value}\n"));
        }
        csv.push_str("\nminute,joined,activated,abandoned,queue_length\n");
        for minute in &self.per_minute {
            csv.push_str(&format!(
                "{},{},{},{},{}\n",
                minute.minute.to_rfc3339(),
                minute.joined,
                minute.activated,
                minute.abandoned,
                minute.queue_length
            ));
        }
        csv
    }
}

/// Computes the report of `event_id` now and stores it (replacing an earlier one).
pub async fn compute_and_store(
    common: &CommonConfig,
    postgres: &PgPool,
    event_id: &str,
    active_ttl_seconds: i64,
) -> anyhow::Result<EventReport> {
    let records = SaleRecords::read(common, postgres, event_id).await?;
    let report = compute(event_id, &records, Utc::now(), active_ttl_seconds);
    sqlx::query(
        "INSERT INTO event_reports (event_id, computed_at, report) VALUES ($1, $2, $3)
         ON CONFLICT (event_id) DO UPDATE SET computed_at = EXCLUDED.computed_at, report = EXCLUDED.report",
    )
    .bind(event_id)
    .bind(report.computed_at)
    .bind(sqlx::types::Json(&report))
    .execute(postgres)
    .await?;
    Ok(report)
}

/// The stored report of `event_id`, if any.
pub async fn stored(postgres: &PgPool, event_id: &str) -> sqlx::Result<Option<EventReport>> {
    let report: Option<sqlx::types::Json<EventReport>> =
        sqlx::query_scalar("SELECT report FROM event_reports WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(postgres)
            .await?;
    Ok(report.map(|report| report.0))
}

/// `waiting-room report --event ID`: computes and stores an event's report and prints
/// it (JSON, or CSV with `--csv`).
#[derive(Debug, Clone, Args)]
pub struct ReportCommand {
    /// The event to report on.
    #[arg(long)]
    pub event: String,

    /// Print CSV instead of JSON.
    #[arg(long)]
    pub csv: bool,

    /// Session length used to tell expired from still active tickets, when the event
    /// no longer has a queue to read it from.
    #[arg(long, default_value_t = 600)]
    pub active_ttl_seconds: i64,
}

impl ReportCommand {
    pub async fn run(&self, common: &CommonConfig) -> anyhow::Result<()> {
        let postgres = PgPool::connect(&common.database_url).await?;
        let catalog = contract::catalog::Catalog::load(&postgres).await?;
        let ttl = catalog
            .event(&self.event)
            .and_then(|event| event.partition)
            .map_or(self.active_ttl_seconds, |partition| {
                i64::from(catalog.queue(partition).activation.active_ttl_seconds)
            });
        let report = compute_and_store(common, &postgres, &self.event, ttl).await?;
        if self.csv {
            print!("{}", report.to_csv());
        } else {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).single().unwrap()
    }

    #[test]
    fn totals_waits_peak_and_minutes_follow_the_records() {
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        let mut records = SaleRecords {
            tickets: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (*id, 0, 10 + i as i64, at(i as i64 * 1_000)))
                .collect(),
            dead_letters: vec![(0, 12), (0, 99), (1, 11)],
            bought: vec![ids[0]],
            reserving_fans: 2,
            reservations_confirmed: 1,
            seats_sold: 2,
            ..SaleRecords::default()
        };
        // 0 and 1 let in at 10 s and 70 s, 2 abandoned at 65 s, 3 let in at 200 s, 4 waits.
        records
            .decisions
            .insert(ids[0], (Outcome::Activated, 10_000));
        records
            .decisions
            .insert(ids[1], (Outcome::Activated, 70_000));
        records
            .decisions
            .insert(ids[2], (Outcome::Abandoned, 65_000));
        records
            .decisions
            .insert(ids[3], (Outcome::Activated, 200_000));
        let report = compute("gig", &records, at(300_000), 120);
        assert_eq!(
            report.totals,
            Totals {
                joined: 5,
                activated: 3,
                abandoned: 1,
                used: 1,
                expired: 1,
                still_active: 1,
                still_waiting: 1,
                dead_lettered: 1,
            }
        );
        assert!(!report.complete, "one waits, one is active");
        assert_eq!(report.peak_queue_length, 5);
        assert_eq!(report.peak_queue_at, Some(at(4_000)));
        // Waits 10 s, 69 s, 197 s.
        assert_eq!(report.wait_seconds.p50, Some(69.0));
        assert_eq!(report.wait_seconds.max, Some(197.0));
        let minutes: Vec<(u64, u64, u64, u64)> = report
            .per_minute
            .iter()
            .map(|m| (m.joined, m.activated, m.abandoned, m.queue_length))
            .collect();
        assert_eq!(minutes, [(5, 1, 0, 4), (0, 1, 1, 2), (0, 1, 0, 1)]);
        assert_eq!(report.conversion.bought_share, Some(1.0 / 3.0));
        assert_eq!(
            compute("gig", &records, at(300_000), 120),
            report,
            "recomputing gives the same"
        );
        let csv = report.to_csv();
        assert!(
            csv.contains("joined,5\n") && csv.contains("seats_sold,2\n"),
            "{csv}"
        );
        assert!(csv.contains("1970-01-01T00:01:00+00:00,0,1,1,2\n"), "{csv}");
    }

    #[test]
    fn an_empty_sale_has_no_percentiles() {
        let report = compute("quiet", &SaleRecords::default(), at(0), 600);
        assert_eq!(report.totals, Totals::default());
        assert!(report.complete);
        assert_eq!(report.wait_seconds, Percentiles::default());
        assert!(report.per_minute.is_empty());
        assert_eq!(report.conversion.bought_share, None);
    }
}
