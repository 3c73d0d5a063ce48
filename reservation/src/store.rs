//! Reservations and seats in PostgreSQL: every state change is one transaction that
//! also writes its outbox row, so a change and its Kafka event can never disagree.
//!
//! Overselling is impossible by construction: a hold is one conditional `UPDATE` of the
//! seats (`state = 'available'`) inside the transaction that creates the reservation;
//! concurrent holds on the same seat serialise on its row lock and the loser sees it
//! taken. One live reservation per ticket is a partial unique index.

use chrono::{DateTime, Utc};
use contract::seats::SeatState;
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// Holds tried again after a serialization conflict.
const HOLD_RETRIES: &str = "reservation_hold_retries_total";

/// A reservation's lifecycle: `held` until confirmed, released or expired (the
/// `reservations.status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ReservationStatus {
    Held,
    Confirmed,
    Released,
    Expired,
}

impl ReservationStatus {
    pub const ALL: [Self; 4] = [Self::Held, Self::Confirmed, Self::Released, Self::Expired];

    /// Counts reservations reaching this status (`reservations_{status}_total`, the
    /// dashboard's reservation outcomes).
    pub fn count(self, reservations: u64) {
        metrics::counter!(format!("reservations_{}_total", self.as_str())).increment(reservations);
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    /// No change follows a final status.
    pub fn is_final(self) -> bool {
        self != Self::Held
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reservation {
    pub reservation_id: Uuid,
    pub event_id: String,
    #[serde(skip)]
    pub ticket_id: Uuid,
    pub status: ReservationStatus,
    pub seat_ids: Vec<String>,
    pub hold_expires_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub events_url: String,
}

#[derive(sqlx::FromRow)]
struct ReservationRow {
    reservation_id: Uuid,
    event_id: String,
    ticket_id: Uuid,
    status: ReservationStatus,
    seat_ids: Vec<String>,
    hold_expires_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ReservationRow> for Reservation {
    fn from(row: ReservationRow) -> Self {
        Self {
            events_url: format!("/v1/reservations/{}/events", row.reservation_id),
            reservation_id: row.reservation_id,
            event_id: row.event_id,
            ticket_id: row.ticket_id,
            status: row.status,
            seat_ids: row.seat_ids,
            hold_expires_at: row.hold_expires_at,
            updated_at: row.updated_at,
        }
    }
}

const COLUMNS: &str =
    "reservation_id, event_id, ticket_id, status, seat_ids, hold_expires_at, updated_at";

/// Why a hold was refused.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("the ticket already holds a reservation")]
    Exists(Reservation),
    #[error("seats taken")]
    Unavailable(Vec<String>),
    #[error("no such seats")]
    UnknownSeats(Vec<String>),
    #[error("no such event")]
    UnknownEvent,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Why a confirm or release was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("no such reservation")]
    NotFound,
    #[error("the reservation belongs to another ticket")]
    NotYours,
    #[error("the reservation is {}", .0.status.as_str())]
    NotHeld(Reservation),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A seat as the seat map shows it.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Seat {
    pub seat_id: String,
    pub row_index: i32,
    pub seat_number: i32,
    pub state: SeatState,
}

/// PostgreSQL's "try again" errors: a deadlock between two holds locking seats in
/// different orders, or a serialization failure.
fn is_retryable(error: &sqlx::Error) -> bool {
    matches!(error.as_database_error().and_then(|e| e.code()), Some(code) if code == "40P01" || code == "40001")
}

#[derive(Clone)]
pub struct ReservationStore {
    postgres: PgPool,
}

impl ReservationStore {
    pub fn new(postgres: PgPool) -> Self {
        metrics::counter!(HOLD_RETRIES).increment(0);
        Self { postgres }
    }

    pub async fn seats(&self, event_id: &str) -> sqlx::Result<Vec<Seat>> {
        sqlx::query_as(
            "SELECT seat_id, row_index, seat_number, state FROM seats
             WHERE event_id = $1 ORDER BY row_index, seat_number",
        )
        .bind(event_id)
        .fetch_all(&self.postgres)
        .await
    }

    pub async fn event_exists(&self, event_id: &str) -> sqlx::Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE event_id = $1)")
            .bind(event_id)
            .fetch_one(&self.postgres)
            .await
    }

    pub async fn get(&self, reservation_id: Uuid) -> sqlx::Result<Option<Reservation>> {
        let row: Option<ReservationRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM reservations WHERE reservation_id = $1"
        ))
        .bind(reservation_id)
        .fetch_optional(&self.postgres)
        .await?;
        Ok(row.map(Reservation::from))
    }

    /// Holds all of `seat_ids` for the ticket, or none of them.
    pub async fn hold(
        &self,
        event_id: &str,
        ticket_id: Uuid,
        seat_ids: &[String],
        hold_expires_at: DateTime<Utc>,
    ) -> Result<Reservation, HoldError> {
        let mut attempt = 0;
        loop {
            match self
                .try_hold(event_id, ticket_id, seat_ids, hold_expires_at)
                .await
            {
                Err(HoldError::Database(error)) if is_retryable(&error) && attempt < 5 => {
                    attempt += 1;
                    metrics::counter!(HOLD_RETRIES).increment(1);
                }
                result => return result,
            }
        }
    }

    async fn try_hold(
        &self,
        event_id: &str,
        ticket_id: Uuid,
        seat_ids: &[String],
        hold_expires_at: DateTime<Utc>,
    ) -> Result<Reservation, HoldError> {
        let mut transaction = self.postgres.begin().await?;
        // The reservation first: racing repeats of one ticket serialise on its index.
        let inserted: Option<ReservationRow> = sqlx::query_as(&format!(
            "INSERT INTO reservations (reservation_id, event_id, ticket_id, status, seat_ids, hold_expires_at)
             VALUES ($1, $2, $3, 'held', $4, $5)
             ON CONFLICT (ticket_id) WHERE status IN ('held', 'confirmed') DO NOTHING
             RETURNING {COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(event_id)
        .bind(ticket_id)
        .bind(seat_ids)
        .bind(hold_expires_at)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(|error| match error.as_database_error().and_then(|e| e.code()) {
            Some(code) if code == "23503" => HoldError::UnknownEvent,
            _ => HoldError::Database(error),
        })?;
        let Some(reservation) = inserted.map(Reservation::from) else {
            transaction.rollback().await?;
            let existing: ReservationRow = sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM reservations
                 WHERE ticket_id = $1 AND status IN ('held', 'confirmed')"
            ))
            .bind(ticket_id)
            .fetch_one(&self.postgres)
            .await?;
            return Err(HoldError::Exists(existing.into()));
        };
        let held: Vec<String> = sqlx::query_scalar(
            "UPDATE seats SET state = 'held', reservation_id = $1
             WHERE event_id = $2 AND seat_id = ANY($3) AND state = 'available'
             RETURNING seat_id",
        )
        .bind(reservation.reservation_id)
        .bind(event_id)
        .bind(seat_ids)
        .fetch_all(&mut *transaction)
        .await?;
        if held.len() != seat_ids.len() {
            transaction.rollback().await?;
            return Err(self.why_not_held(event_id, seat_ids, &held).await?);
        }
        append_outbox(&mut transaction, &reservation).await?;
        transaction.commit().await?;
        Ok(reservation)
    }

    /// After a partial hold was rolled back: which seats do not exist, or were taken.
    async fn why_not_held(
        &self,
        event_id: &str,
        requested: &[String],
        held: &[String],
    ) -> Result<HoldError, sqlx::Error> {
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT seat_id FROM seats WHERE event_id = $1 AND seat_id = ANY($2)",
        )
        .bind(event_id)
        .bind(requested)
        .fetch_all(&self.postgres)
        .await?;
        let unknown: Vec<String> = requested
            .iter()
            .filter(|seat| !existing.contains(seat))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Ok(HoldError::UnknownSeats(unknown));
        }
        Ok(HoldError::Unavailable(
            requested
                .iter()
                .filter(|seat| !held.contains(seat))
                .cloned()
                .collect(),
        ))
    }

    /// Ends a held reservation of `ticket_id`: `Confirmed` sells its seats, `Released`
    /// gives them back.
    pub async fn finish(
        &self,
        reservation_id: Uuid,
        ticket_id: Uuid,
        status: ReservationStatus,
    ) -> Result<Reservation, TransitionError> {
        let mut transaction = self.postgres.begin().await?;
        let updated: Option<ReservationRow> = sqlx::query_as(&format!(
            "UPDATE reservations SET status = $3, updated_at = now()
             WHERE reservation_id = $1 AND ticket_id = $2 AND status = 'held'
               AND hold_expires_at > now()
             RETURNING {COLUMNS}"
        ))
        .bind(reservation_id)
        .bind(ticket_id)
        .bind(status)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(reservation) = updated.map(Reservation::from) else {
            transaction.rollback().await?;
            return Err(match self.get(reservation_id).await? {
                None => TransitionError::NotFound,
                Some(existing) if existing.ticket_id != ticket_id => TransitionError::NotYours,
                Some(existing) => TransitionError::NotHeld(existing),
            });
        };
        settle_seats(&mut transaction, &[reservation.reservation_id], status).await?;
        append_outbox(&mut transaction, &reservation).await?;
        transaction.commit().await?;
        Ok(reservation)
    }

    /// Expires up to `limit` holds whose time is up and frees their seats. Several
    /// instances may sweep at once: each takes different holds (`SKIP LOCKED`).
    pub async fn expire_due(&self, limit: i64) -> sqlx::Result<Vec<Reservation>> {
        let mut transaction = self.postgres.begin().await?;
        let expired: Vec<ReservationRow> = sqlx::query_as(&format!(
            "WITH due AS (
                 SELECT reservation_id FROM reservations
                 WHERE status = 'held' AND hold_expires_at <= now()
                 ORDER BY hold_expires_at LIMIT $1
                 FOR UPDATE SKIP LOCKED)
             UPDATE reservations AS r SET status = 'expired', updated_at = now()
             FROM due WHERE r.reservation_id = due.reservation_id
             RETURNING {}",
            COLUMNS
                .split(", ")
                .map(|column| format!("r.{column}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(limit)
        .fetch_all(&mut *transaction)
        .await?;
        let expired: Vec<Reservation> = expired.into_iter().map(Reservation::from).collect();
        if !expired.is_empty() {
            let ids: Vec<Uuid> = expired.iter().map(|r| r.reservation_id).collect();
            settle_seats(&mut transaction, &ids, ReservationStatus::Expired).await?;
            for reservation in &expired {
                append_outbox(&mut transaction, reservation).await?;
            }
        }
        transaction.commit().await?;
        Ok(expired)
    }
}

/// Seats of finished reservations: sold when confirmed, available again otherwise.
async fn settle_seats(
    transaction: &mut Transaction<'_, Postgres>,
    reservation_ids: &[Uuid],
    status: ReservationStatus,
) -> sqlx::Result<()> {
    let query = if status == ReservationStatus::Confirmed {
        "UPDATE seats SET state = 'sold' WHERE reservation_id = ANY($1)"
    } else {
        "UPDATE seats SET state = 'available', reservation_id = NULL WHERE reservation_id = ANY($1)"
    };
    sqlx::query(query)
        .bind(reservation_ids)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// The reservation's new status as an outbox message, in the change's transaction.
async fn append_outbox(
    transaction: &mut Transaction<'_, Postgres>,
    reservation: &Reservation,
) -> sqlx::Result<()> {
    let message_id = Uuid::now_v7();
    let payload = serde_json::json!({
        "message_id": message_id,
        "reservation_id": reservation.reservation_id,
        "event_id": reservation.event_id,
        "status": reservation.status,
        "seat_ids": reservation.seat_ids,
        "at": reservation.updated_at,
    });
    sqlx::query(
        "INSERT INTO outbox (message_id, event_id, reservation_id, payload) VALUES ($1, $2, $3, $4)",
    )
    .bind(message_id)
    .bind(&reservation.event_id)
    .bind(reservation.reservation_id)
    .bind(payload)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}
