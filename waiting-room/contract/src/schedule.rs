//! A scheduled on-sale: when the pre-queue opens, when the sale starts and ends, and in
//! what order the pre-queue is served.
//!
//! The phase is a pure function of the schedule and the clock, so every instance of
//! every service agrees on it without a timer job or an operator's action: the entry API
//! refuses joins before the pre-queue opens and after the end, the activator holds the
//! queue until the start, and a ticket's place in line ([`standing`]) is known once the
//! start (and, for a draw, the pre-queue's range) is.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::draw::{Draw, DrawRange, DrawSeed};

/// In what order the pre-queue is served (the `events.queue_order` column).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum QueueOrder {
    /// Arrival order, from the first join of the pre-queue on.
    #[default]
    Fifo,
    /// Everyone who joined before the start gets a random place (see [`crate::draw`]);
    /// later arrivals queue behind them in arrival order.
    ShufflePrequeue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Schedule {
    pub prequeue_opens_at: DateTime<Utc>,
    pub sale_starts_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_ends_at: Option<DateTime<Utc>>,
    pub order: QueueOrder,
}

/// Where a scheduled sale stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SalePhase {
    /// Joins refused (`not_open_yet`).
    BeforePrequeue,
    /// Joins get a ticket that waits for the start (`prequeued`).
    Prequeue,
    OnSale,
    /// Joins refused; the line keeps draining.
    Ended,
}

impl Schedule {
    pub fn phase(&self, now: DateTime<Utc>) -> SalePhase {
        if now < self.prequeue_opens_at {
            SalePhase::BeforePrequeue
        } else if now < self.sale_starts_at {
            SalePhase::Prequeue
        } else if self.sale_ends_at.is_some_and(|end| now >= end) {
            SalePhase::Ended
        } else {
            SalePhase::OnSale
        }
    }

    pub fn started(&self, now: DateTime<Utc>) -> bool {
        now >= self.sale_starts_at
    }
}

/// The draw of a `shuffle_prequeue` event: the seed from scheduling on, the pre-queue's
/// range once the activator fixed it at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawState {
    pub seed: DrawSeed,
    pub range: Option<DrawRange>,
}

impl DrawState {
    pub fn fixed(&self) -> Option<Draw> {
        self.range.map(|range| Draw {
            seed: self.seed,
            range,
        })
    }
}

/// A ticket's place in line, from its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The sale has not started (or its draw is not fixed yet): the ticket waits for
    /// the start, with its place known only in arrival order.
    Prequeued {
        queue_number: Option<i64>,
    },
    InLine {
        queue_number: i64,
    },
}

/// Where the ticket at `offset` of `partition` stands at `now` under `schedule` and
/// `draw` (a draw orders only the partition it was made on).
pub fn standing(
    schedule: Option<&Schedule>,
    draw: Option<&DrawState>,
    partition: i32,
    offset: i64,
    now: DateTime<Utc>,
) -> Standing {
    let Some(schedule) = schedule else {
        return Standing::InLine {
            queue_number: offset,
        };
    };
    let started = schedule.started(now);
    let fixed = draw.and_then(DrawState::fixed);
    if fixed.is_some_and(|draw| draw.range.partition != partition) {
        // Issued after the event moved: its draw was of another queue.
        return Standing::InLine {
            queue_number: offset,
        };
    }
    match (schedule.order, fixed) {
        (QueueOrder::ShufflePrequeue, Some(draw)) => Standing::InLine {
            queue_number: draw.queue_number(offset),
        },
        (QueueOrder::ShufflePrequeue, None) => Standing::Prequeued { queue_number: None },
        (QueueOrder::Fifo, _) if started => Standing::InLine {
            queue_number: offset,
        },
        (QueueOrder::Fifo, _) => Standing::Prequeued {
            queue_number: Some(offset),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn schedule(order: QueueOrder, ends: bool) -> (Schedule, DateTime<Utc>) {
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("a valid instant");
        let schedule = Schedule {
            prequeue_opens_at: start - Duration::minutes(30),
            sale_starts_at: start,
            sale_ends_at: ends.then(|| start + Duration::hours(2)),
            order,
        };
        (schedule, start)
    }

    #[test]
    fn the_phase_follows_the_clock() {
        let (schedule, start) = schedule(QueueOrder::Fifo, true);
        let at = |offset: i64| schedule.phase(start + Duration::seconds(offset));
        assert_eq!(at(-1801), SalePhase::BeforePrequeue);
        assert_eq!(at(-1800), SalePhase::Prequeue);
        assert_eq!(at(-1), SalePhase::Prequeue);
        assert_eq!(at(0), SalePhase::OnSale);
        assert_eq!(at(7199), SalePhase::OnSale);
        assert_eq!(at(7200), SalePhase::Ended);
        let (open_ended, start) = self::schedule(QueueOrder::Fifo, false);
        assert_eq!(
            open_ended.phase(start + Duration::days(365)),
            SalePhase::OnSale
        );
    }

    #[test]
    fn arrival_order_is_known_before_the_start_and_a_draw_only_once_fixed() {
        let (fifo, start) = schedule(QueueOrder::Fifo, false);
        let before = start - Duration::seconds(1);
        assert_eq!(
            standing(Some(&fifo), None, 0, 42, before),
            Standing::Prequeued {
                queue_number: Some(42)
            }
        );
        assert_eq!(
            standing(Some(&fifo), None, 0, 42, start),
            Standing::InLine { queue_number: 42 }
        );
        assert_eq!(
            standing(None, None, 0, 42, before),
            Standing::InLine { queue_number: 42 }
        );

        let (shuffle, _) = schedule(QueueOrder::ShufflePrequeue, false);
        let mut draw = DrawState {
            seed: DrawSeed::from_bytes([9; 32]),
            range: None,
        };
        assert_eq!(
            standing(Some(&shuffle), Some(&draw), 0, 42, start),
            Standing::Prequeued { queue_number: None },
            "started, but the draw is not fixed yet"
        );
        draw.range = Some(DrawRange {
            partition: 0,
            first: 40,
            end: 50,
        });
        let fixed = draw.fixed().expect("fixed");
        assert_eq!(
            standing(Some(&shuffle), Some(&draw), 0, 42, start),
            Standing::InLine {
                queue_number: fixed.queue_number(42)
            }
        );
        assert_eq!(
            standing(Some(&shuffle), Some(&draw), 0, 57, start),
            Standing::InLine { queue_number: 57 },
            "later arrivals keep their arrival order"
        );
        assert_eq!(
            standing(Some(&shuffle), Some(&draw), 1, 42, start),
            Standing::InLine { queue_number: 42 },
            "a ticket of another partition (issued after a move) is not drawn"
        );
    }
}
