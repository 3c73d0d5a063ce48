//! The SQL behind the admin API: one [`CatalogChange`] per request, a transaction over
//! the `events`, `queues` and `seats` tables that commits all of the change or none.

use chrono::{DateTime, Utc};
use contract::catalog::{
    ActivationPolicy, AdmissionPolicy, EntryPolicy, EventColumns, EventState, PolicyColumns,
    QueueMode, SeatLayout, TokenPlacement,
};
use contract::draw::DrawSeed;
use contract::live_catalog::LiveCatalog;
use contract::schedule::{DrawState, QueueOrder, Schedule};
use contract::seats::{row_label, SeatState};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};

use super::audit::{AuditAction, AuditEntry, Operator, Subject};
use crate::admission::site_keys::NewSiteKey;
use crate::error::WaitingRoomError;

/// What an event looked like before the change.
#[derive(Debug, Clone)]
pub struct ExistingEvent {
    pub state: EventState,
    /// When it last closed (while closed).
    pub closed_at: Option<DateTime<Utc>>,
    /// `None`: released (closed, drained, its partition given back).
    pub partition: Option<i32>,
    pub layout: Option<SeatLayout>,
    pub entry: EntryPolicy,
    pub schedule: Option<Schedule>,
    /// Its seed (whatever the order) and recorded range, if it ever shuffled.
    pub draw: Option<DrawState>,
    pub admission: Option<AdmissionPolicy>,
}

impl ExistingEvent {
    /// Whether its schedule keeps it on its queue at `now`: its pre-queue's fans wait
    /// there for the start, and a drawn pre-queue is a range of that partition.
    pub fn queue_fixed(&self, now: DateTime<Utc>) -> bool {
        self.schedule.is_some_and(|schedule| {
            now >= schedule.prequeue_opens_at
                && (schedule.order == QueueOrder::ShufflePrequeue
                    || !schedule.started(now) && self.state != EventState::Closed)
        })
    }
}

/// An event as `PUT /admin/events/{id}` leaves it; `None` keeps the current value (or
/// the default for a new event).
pub struct EventRecord<'a> {
    pub event_id: &'a str,
    pub name: Option<&'a str>,
    pub state: Option<EventState>,
    pub partition: Option<i32>,
    pub layout: Option<SeatLayout>,
    pub entry: &'a EntryPolicy,
    pub schedule: Option<Schedule>,
    /// The draw's seed (`shuffle_prequeue` only).
    pub draw_seed: Option<DrawSeed>,
    pub admission: Option<&'a AdmissionPolicy>,
}

#[derive(sqlx::FromRow)]
struct ExistingRow {
    state: EventState,
    closed_at: Option<DateTime<Utc>>,
    partition: Option<i32>,
    #[sqlx(flatten)]
    columns: EventColumns,
}

pub struct CatalogChange {
    transaction: Transaction<'static, Postgres>,
}

fn internal(error: sqlx::Error) -> WaitingRoomError {
    WaitingRoomError::internal(error)
}

impl CatalogChange {
    pub async fn begin(postgres: &PgPool) -> Result<Self, WaitingRoomError> {
        let transaction = postgres.begin().await.map_err(internal)?;
        Ok(Self { transaction })
    }

    /// Commits, then reloads this instance's catalog so the response reads the change
    /// (other instances follow through LISTEN/NOTIFY).
    pub async fn commit(self, catalog: &LiveCatalog) -> Result<(), WaitingRoomError> {
        self.commit_outside_catalog().await?;
        catalog.reload().await.map_err(internal)
    }

    /// Commits a change the catalog does not hold (site keys): nothing to reload, so a
    /// failing reload cannot turn a committed change into an error answer.
    pub async fn commit_outside_catalog(self) -> Result<(), WaitingRoomError> {
        self.transaction.commit().await.map_err(internal)
    }

    /// What the audit log shows of `subject` now, within this change (`None`: it does
    /// not exist). Timestamps of the last update are left out: they are the change.
    pub async fn snapshot(
        &mut self,
        subject: Subject<'_>,
    ) -> Result<Option<Value>, WaitingRoomError> {
        let query = match subject {
            Subject::Event(event_id) => sqlx::query_scalar(
                "SELECT jsonb_build_object(
                     'event', to_jsonb(e) - 'draw_seed' - 'updated_at',
                     'queue', to_jsonb(q) - 'updated_at')
                 FROM events e LEFT JOIN queues q ON q.partition = e.partition
                 WHERE e.event_id = $1",
            )
            .bind(event_id),
            Subject::Queue(partition) => sqlx::query_scalar(
                "SELECT jsonb_build_object(
                     'queue', to_jsonb(q) - 'updated_at',
                     'events', (SELECT coalesce(jsonb_agg(event_id ORDER BY event_id), '[]')
                                FROM events WHERE events.partition = q.partition))
                 FROM queues q WHERE q.partition = $1",
            )
            .bind(partition),
            Subject::Topic(topic) => sqlx::query_scalar(
                "SELECT jsonb_build_object('topic', topic, 'partitions', partitions)
                 FROM topic_partitions WHERE topic = $1",
            )
            .bind(topic),
            Subject::SiteKey(key_id) => sqlx::query_scalar(
                "SELECT to_jsonb(k) - 'secret_hash' FROM site_api_keys k WHERE key_id = $1",
            )
            .bind(key_id),
        };
        query
            .fetch_optional(&mut *self.transaction)
            .await
            .map_err(internal)
    }

    /// Records the change in the audit log; it lands with the change or not at all.
    pub async fn record(
        &mut self,
        operator: &Operator,
        action: AuditAction,
        subject: Subject<'_>,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Result<(), WaitingRoomError> {
        let (event_id, partition) = match subject {
            Subject::Event(event_id) => (Some(event_id), None),
            Subject::Queue(partition) => (None, Some(partition)),
            Subject::Topic(_) | Subject::SiteKey(_) => (None, None),
        };
        sqlx::query(
            "INSERT INTO admin_audit (actor, action, event_id, partition, before, after)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&*operator.0)
        .bind(action)
        .bind(event_id)
        .bind(partition)
        .bind(before)
        .bind(after)
        .execute(&mut *self.transaction)
        .await
        .map(drop)
        .map_err(internal)
    }

    /// One writer at a time picks partitions, so two new events never take the same
    /// free one.
    pub async fn lock_partition_assignment(&mut self) -> Result<(), WaitingRoomError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('waiting-room.partition-assignment'))")
            .execute(&mut *self.transaction)
            .await
            .map(drop)
            .map_err(internal)
    }

    /// The event as it is, locked for the rest of the change.
    pub async fn existing_event(
        &mut self,
        event_id: &str,
    ) -> Result<Option<ExistingEvent>, WaitingRoomError> {
        let row: Option<ExistingRow> = sqlx::query_as(&format!(
            "SELECT state, closed_at, partition, {} FROM events WHERE event_id = $1 FOR UPDATE",
            EventColumns::LIST
        ))
        .bind(event_id)
        .fetch_optional(&mut *self.transaction)
        .await
        .map_err(internal)?;
        Ok(row.map(|row| ExistingEvent {
            state: row.state,
            closed_at: row.closed_at,
            partition: row.partition,
            layout: row.columns.layout(),
            schedule: row.columns.schedule(),
            draw: row.columns.draw_record(),
            admission: row.columns.admission(),
            entry: row.columns.entry(),
        }))
    }

    /// The partitions of `0..partitions` no event uses, lowest first.
    pub async fn free_partitions(&mut self, partitions: i32) -> Result<Vec<i32>, WaitingRoomError> {
        sqlx::query_scalar(
            "SELECT p FROM generate_series(0, $1 - 1) AS p
             WHERE NOT EXISTS (SELECT 1 FROM events WHERE events.partition = p)
             ORDER BY p",
        )
        .bind(partitions)
        .fetch_all(&mut *self.transaction)
        .await
        .map_err(internal)
    }

    /// Partitions whose events have all been closed for at least `settle`, lowest
    /// first: the candidates for release when no partition is free.
    pub async fn settled_partitions(
        &mut self,
        settle: std::time::Duration,
    ) -> Result<Vec<i32>, WaitingRoomError> {
        sqlx::query_scalar(
            "SELECT partition FROM events WHERE partition IS NOT NULL
             GROUP BY partition
             HAVING bool_and(state = 'closed'
                             AND closed_at <= now() - make_interval(secs => $1))
             ORDER BY partition",
        )
        .bind(settle.as_secs_f64())
        .fetch_all(&mut *self.transaction)
        .await
        .map_err(internal)
    }

    /// Stamps when the event closed (kept while it stays closed, cleared when it
    /// reopens).
    pub async fn stamp_closing(&mut self, event_id: &str) -> Result<(), WaitingRoomError> {
        sqlx::query(
            "UPDATE events SET closed_at = CASE WHEN state = 'closed'
                                                THEN COALESCE(closed_at, now()) END
             WHERE event_id = $1",
        )
        .bind(event_id)
        .execute(&mut *self.transaction)
        .await
        .map(drop)
        .map_err(internal)
    }

    /// Whether any event is mapped to `partition`.
    pub async fn partition_in_use(&mut self, partition: i32) -> Result<bool, WaitingRoomError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE partition = $1)")
            .bind(partition)
            .fetch_one(&mut *self.transaction)
            .await
            .map_err(internal)
    }

    /// Takes `partition` back from its (closed) events; they keep everything else.
    /// Returns those events.
    pub async fn release_partition(
        &mut self,
        partition: i32,
    ) -> Result<Vec<String>, WaitingRoomError> {
        sqlx::query_scalar(
            "UPDATE events SET partition = NULL, updated_at = now()
             WHERE partition = $1 AND state = 'closed' RETURNING event_id",
        )
        .bind(partition)
        .fetch_all(&mut *self.transaction)
        .await
        .map_err(internal)
    }

    /// Gives a partition that a deleted or released event left behind back its default
    /// mode and policy: a new event must not inherit the old one's (a paused queue, say). The
    /// queue's Redis state stays: numbers continue from the partition's offset.
    pub async fn reset_queue(&mut self, partition: i32) -> Result<(), WaitingRoomError> {
        sqlx::query(
            "INSERT INTO queues (partition) VALUES ($1) ON CONFLICT (partition) DO UPDATE SET
                 mode = DEFAULT, batch_size = DEFAULT, interval_ms = DEFAULT,
                 max_active = DEFAULT, active_ttl_seconds = DEFAULT,
                 grace_seconds = DEFAULT, updated_at = now()",
        )
        .bind(partition)
        .execute(&mut *self.transaction)
        .await
        .map(drop)
        .map_err(internal)
    }

    /// Reservations ever made for the event, held, confirmed or released alike.
    pub async fn reservation_count(&mut self, event_id: &str) -> Result<i64, WaitingRoomError> {
        sqlx::query_scalar("SELECT count(*) FROM reservations WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&mut *self.transaction)
            .await
            .map_err(internal)
    }

    /// Deletes the event and its seats; its partition is free for a new event.
    pub async fn delete_event(&mut self, event_id: &str) -> Result<(), WaitingRoomError> {
        sqlx::query("DELETE FROM events WHERE event_id = $1")
            .bind(event_id)
            .execute(&mut *self.transaction)
            .await
            .map(drop)
            .map_err(internal)
    }

    pub async fn ensure_queue(&mut self, partition: i32) -> Result<(), WaitingRoomError> {
        sqlx::query("INSERT INTO queues (partition) VALUES ($1) ON CONFLICT (partition) DO NOTHING")
            .bind(partition)
            .execute(&mut *self.transaction)
            .await
            .map(drop)
            .map_err(internal)
    }

    /// The queue's policy (the defaults for a queue without a row), locked.
    pub async fn policy(&mut self, partition: i32) -> Result<ActivationPolicy, WaitingRoomError> {
        let row: Option<PolicyColumns> = sqlx::query_as(
            "SELECT batch_size, interval_ms, max_active, active_ttl_seconds, grace_seconds
             FROM queues WHERE partition = $1 FOR UPDATE",
        )
        .bind(partition)
        .fetch_optional(&mut *self.transaction)
        .await
        .map_err(internal)?;
        Ok(row.map(ActivationPolicy::from).unwrap_or_default())
    }

    pub async fn store_policy(
        &mut self,
        partition: i32,
        policy: ActivationPolicy,
    ) -> Result<(), WaitingRoomError> {
        let columns = PolicyColumns::from(policy);
        sqlx::query(
            "UPDATE queues SET batch_size = $2, interval_ms = $3, max_active = $4,
                 active_ttl_seconds = $5, grace_seconds = $6, updated_at = now()
             WHERE partition = $1",
        )
        .bind(partition)
        .bind(columns.batch_size)
        .bind(columns.interval_ms)
        .bind(columns.max_active)
        .bind(columns.active_ttl_seconds)
        .bind(columns.grace_seconds)
        .execute(&mut *self.transaction)
        .await
        .map(drop)
        .map_err(internal)
    }

    pub async fn store_mode(
        &mut self,
        partition: i32,
        mode: QueueMode,
    ) -> Result<(), WaitingRoomError> {
        sqlx::query("UPDATE queues SET mode = $2, updated_at = now() WHERE partition = $1")
            .bind(partition)
            .bind(mode)
            .execute(&mut *self.transaction)
            .await
            .map(drop)
            .map_err(internal)
    }

    /// Stores a new site API key (only its secret's hash).
    pub async fn insert_site_key(
        &mut self,
        key: &NewSiteKey,
        audience: &str,
        label: &str,
        operator: &Operator,
    ) -> Result<(), WaitingRoomError> {
        sqlx::query(
            "INSERT INTO site_api_keys (key_id, audience, label, secret_hash, created_by)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.key_id)
        .bind(audience)
        .bind(label)
        .bind(key.secret_hash().to_vec())
        .bind(&*operator.0)
        .execute(&mut *self.transaction)
        .await
        .map(drop)
        .map_err(internal)
    }

    /// Revokes a site API key now; `false` if there is no such key. Revoking a revoked
    /// key keeps its first revocation time.
    pub async fn revoke_site_key(&mut self, key_id: &str) -> Result<bool, WaitingRoomError> {
        sqlx::query(
            "UPDATE site_api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE key_id = $1",
        )
        .bind(key_id)
        .execute(&mut *self.transaction)
        .await
        .map(|done| done.rows_affected() == 1)
        .map_err(internal)
    }

    /// Creates or updates the event (a new one is `open` unless a state is given).
    pub async fn upsert_event(&mut self, event: &EventRecord<'_>) -> Result<(), WaitingRoomError> {
        let (rows, per_row) = match event.layout {
            Some(layout) => (
                Some(i64::from(layout.rows)),
                Some(i64::from(layout.seats_per_row)),
            ),
            None => (None, None),
        };
        sqlx::query(
            "INSERT INTO events (event_id, name, state, partition, seat_rows, seats_per_row,
                                 entry_identity, entry_issuer, entry_challenge,
                                 entry_challenge_difficulty, prequeue_opens_at, sale_starts_at,
                                 sale_ends_at, queue_order, draw_seed, admission_audience,
                                 admission_return_url, admission_token_in)
             VALUES ($1, COALESCE($2, $1),
                     -- Checked before the conflict is: a released event's row stays closed.
                     COALESCE($3, CASE WHEN $4::int IS NULL THEN 'closed' ELSE 'open' END),
                     $4, $5, $6, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
             ON CONFLICT (event_id) DO UPDATE SET
                 name = COALESCE($2, events.name),
                 state = COALESCE($3, events.state),
                 partition = $4,
                 seat_rows = CASE WHEN $7 THEN $5 ELSE events.seat_rows END,
                 seats_per_row = CASE WHEN $7 THEN $6 ELSE events.seats_per_row END,
                 entry_identity = $8,
                 entry_issuer = $9,
                 entry_challenge = $10,
                 entry_challenge_difficulty = $11,
                 prequeue_opens_at = $12,
                 sale_starts_at = $13,
                 sale_ends_at = $14,
                 queue_order = $15,
                 draw_seed = $16,
                 admission_audience = $17,
                 admission_return_url = $18,
                 admission_token_in = $19,
                 updated_at = now()",
        )
        .bind(event.event_id)
        .bind(event.name)
        .bind(event.state)
        .bind(event.partition)
        .bind(rows)
        .bind(per_row)
        .bind(event.layout.is_some())
        .bind(event.entry.identity)
        .bind(event.entry.issuer.as_deref())
        .bind(event.entry.challenge)
        .bind(i32::try_from(event.entry.challenge_difficulty).unwrap_or(i32::MAX))
        .bind(event.schedule.map(|schedule| schedule.prequeue_opens_at))
        .bind(event.schedule.map(|schedule| schedule.sale_starts_at))
        .bind(event.schedule.and_then(|schedule| schedule.sale_ends_at))
        .bind(
            event
                .schedule
                .map_or(QueueOrder::Fifo, |schedule| schedule.order),
        )
        .bind(event.draw_seed.map(|seed| seed.as_bytes().to_vec()))
        .bind(event.admission.map(|admission| admission.audience.as_str()))
        .bind(
            event
                .admission
                .and_then(|admission| admission.return_url.as_deref()),
        )
        .bind(
            event
                .admission
                .map_or(TokenPlacement::default(), |admission| admission.token_in),
        )
        .execute(&mut *self.transaction)
        .await
        .map(drop)
        .map_err(internal)
    }

    /// A shuffling event on `partition` that shares it with another event: its draw
    /// needs the queue to itself (the pre-queue is a range of the partition's offsets).
    pub async fn shared_shuffle(
        &mut self,
        partition: i32,
    ) -> Result<Option<String>, WaitingRoomError> {
        sqlx::query_scalar(
            "SELECT event_id FROM events
             WHERE partition = $1 AND queue_order = 'shuffle_prequeue'
               AND (SELECT count(*) FROM events WHERE partition = $1) > 1
             LIMIT 1",
        )
        .bind(partition)
        .fetch_optional(&mut *self.transaction)
        .await
        .map_err(internal)
    }

    /// The partition count recorded for `topic` (raised online), if any.
    pub async fn partition_count(&mut self, topic: &str) -> Result<Option<i32>, WaitingRoomError> {
        sqlx::query_scalar("SELECT partitions FROM topic_partitions WHERE topic = $1")
            .bind(topic)
            .fetch_optional(&mut *self.transaction)
            .await
            .map_err(internal)
    }

    /// Records that `topic` now has `partitions` partitions (raised online).
    pub async fn store_partition_count(
        &mut self,
        topic: &str,
        partitions: i32,
    ) -> Result<(), WaitingRoomError> {
        sqlx::query(
            "INSERT INTO topic_partitions (topic, partitions) VALUES ($1, $2)
             ON CONFLICT (topic) DO UPDATE SET
                 partitions = GREATEST(topic_partitions.partitions, $2), updated_at = now()",
        )
        .bind(topic)
        .bind(partitions)
        .execute(&mut *self.transaction)
        .await
        .map(drop)
        .map_err(internal)
    }

    /// Maps an event to `partition`; `false` when there is no such event.
    pub async fn move_event(
        &mut self,
        event_id: &str,
        partition: i32,
    ) -> Result<bool, WaitingRoomError> {
        sqlx::query("UPDATE events SET partition = $2, updated_at = now() WHERE event_id = $1")
            .bind(event_id)
            .bind(partition)
            .execute(&mut *self.transaction)
            .await
            .map(|moved| moved.rows_affected() > 0)
            .map_err(internal)
    }

    /// Replaces an event's seats with `layout`'s. Refused (409) while any seat is held or
    /// sold: a fan's hold must never point at a seat that no longer exists.
    pub async fn replace_layout(
        &mut self,
        event_id: &str,
        layout: SeatLayout,
    ) -> Result<(), WaitingRoomError> {
        let in_use: i64 =
            sqlx::query_scalar("SELECT count(*) FROM seats WHERE event_id = $1 AND state <> $2")
                .bind(event_id)
                .bind(SeatState::Available)
                .fetch_one(&mut *self.transaction)
                .await
                .map_err(internal)?;
        if in_use > 0 {
            return Err(WaitingRoomError::SeatLayoutInUse { in_use });
        }
        sqlx::query("DELETE FROM seats WHERE event_id = $1")
            .bind(event_id)
            .execute(&mut *self.transaction)
            .await
            .map_err(internal)?;
        let rows: Vec<i32> = (0..layout.rows)
            .filter_map(|row| i32::try_from(row).ok())
            .collect();
        let labels: Vec<String> = (0..layout.rows).map(row_label).collect();
        sqlx::query(
            "INSERT INTO seats (event_id, seat_id, row_index, seat_number)
             SELECT $1, labels.label || '-' || number, labels.row_index, number
             FROM unnest($2::int[], $3::text[]) AS labels (row_index, label)
             CROSS JOIN generate_series(1, $4) AS number",
        )
        .bind(event_id)
        .bind(&rows)
        .bind(&labels)
        .bind(i32::try_from(layout.seats_per_row).unwrap_or(i32::MAX))
        .execute(&mut *self.transaction)
        .await
        .map(drop)
        .map_err(internal)
    }
}

/// Audit entries, newest first: all, or one event's; older than `before` when given.
pub async fn audit_entries(
    postgres: &PgPool,
    event_id: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, WaitingRoomError> {
    sqlx::query_as(
        "SELECT audit_id, at, actor, action, event_id, partition, before, after
         FROM admin_audit
         WHERE ($1::text IS NULL OR event_id = $1) AND ($2::bigint IS NULL OR audit_id < $2)
         ORDER BY audit_id DESC LIMIT $3",
    )
    .bind(event_id)
    .bind(before)
    .bind(limit)
    .fetch_all(postgres)
    .await
    .map_err(internal)
}

/// The sale of an event as PostgreSQL records it: reservations by outcome and seats.
#[derive(Debug, Default, serde::Serialize, sqlx::FromRow)]
pub struct SaleFigures {
    /// Reservations holding seats now.
    pub reservations_held: i64,
    pub reservations_confirmed: i64,
    pub seats_held: i64,
    pub seats_sold: i64,
}

pub async fn sale_figures(
    postgres: &PgPool,
    event_id: &str,
) -> Result<SaleFigures, WaitingRoomError> {
    sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM reservations
             WHERE event_id = $1 AND status = 'held' AND hold_expires_at > now()) AS reservations_held,
           (SELECT count(*) FROM reservations
             WHERE event_id = $1 AND status = 'confirmed') AS reservations_confirmed,
           (SELECT count(*) FROM seats WHERE event_id = $1 AND state = 'held') AS seats_held,
           (SELECT count(*) FROM seats WHERE event_id = $1 AND state = 'sold') AS seats_sold",
    )
    .bind(event_id)
    .fetch_one(postgres)
    .await
    .map_err(internal)
}
