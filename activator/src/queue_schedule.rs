//! What the schedules of a queue's events mean for the queue at an instant.
//!
//! A queue is held while any event on it is in its pre-queue (its fans wait for the
//! start, and nobody is served before it; a closed event holds nothing); at the
//! earliest start the worker wakes by itself and looks again. A started event that shuffles its pre-queue
//! needs its draw fixed before anyone is served; once fixed, the draw orders the queue.
//! A pure function of the catalog and the clock: every activator agrees, and a restarted
//! one picks up where the last left off.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use contract::catalog::{Catalog, EventState};
use contract::draw::Draw;
use contract::schedule::QueueOrder;

#[derive(Debug, Default)]
pub struct QueueSchedule {
    /// The earliest start of a sale in its pre-queue: the queue is held until then.
    pub held_until: Option<DateTime<Utc>>,
    /// The earliest pre-queue opening still ahead: the queue is looked at again then.
    pub wake_at: Option<DateTime<Utc>>,
    /// A started event whose pre-queue must be drawn before anyone is served.
    pub undrawn: Option<String>,
    /// The fixed draw that orders the queue.
    pub draw: Option<Draw>,
    /// Each scheduled event's start (ms): a ticket issued before it counts as issued,
    /// and as last seen, no earlier than the start, so the pre-queue's fans are not
    /// taken for gone while they waited for the opening.
    pub starts_ms: HashMap<String, i64>,
}

impl QueueSchedule {
    pub fn of(catalog: &Catalog, partition: i32, now: DateTime<Utc>) -> Self {
        let mut schedule = Self::default();
        for event in catalog.events_on(partition) {
            let Some(sale) = event.schedule else {
                continue;
            };
            schedule.starts_ms.insert(
                event.event_id.as_str().to_owned(),
                sale.sale_starts_at.timestamp_millis(),
            );
            if !sale.started(now) {
                if event.state == EventState::Closed {
                    // Closed: its line drains; nothing waits for the start.
                    continue;
                }
                if now < sale.prequeue_opens_at {
                    // Nobody of this sale is in line yet: the queue's other events go on.
                    schedule.wake_at = Some(
                        schedule
                            .wake_at
                            .map_or(sale.prequeue_opens_at, |at| at.min(sale.prequeue_opens_at)),
                    );
                    continue;
                }
                schedule.held_until = Some(
                    schedule
                        .held_until
                        .map_or(sale.sale_starts_at, |held| held.min(sale.sale_starts_at)),
                );
            } else if sale.order == QueueOrder::ShufflePrequeue {
                // A draw of another partition (the event moved) orders nothing here.
                match event
                    .draw
                    .and_then(|draw| draw.fixed())
                    .filter(|draw| draw.range.partition == partition)
                {
                    Some(draw) => schedule.draw = Some(draw),
                    None => schedule.undrawn = Some(event.event_id.as_str().to_owned()),
                }
            }
        }
        schedule
    }

    /// Whether the queue may serve anyone now.
    pub fn serving_allowed(&self) -> bool {
        self.held_until.is_none() && self.undrawn.is_none()
    }

    /// When the queue's schedule next changes by itself.
    pub fn next_change(&self) -> Option<DateTime<Utc>> {
        match (self.held_until, self.wake_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
