//! The bounds on live ticket streams: each open stream holds a slot of the instance
//! (beyond the limit a stream is refused with 503 before it starts, so a crowd cannot
//! exhaust the process's file descriptors or memory) and a slot of its ticket (a fan
//! may have two tabs; one token cannot hold hundreds of sockets: 429).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

#[derive(Clone)]
pub struct StreamSlots {
    open: Arc<AtomicUsize>,
    limit: usize,
    per_ticket: Arc<Mutex<HashMap<Uuid, usize>>>,
    per_ticket_limit: usize,
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The instance holds its limit of streams.
    InstanceFull,
    /// The ticket holds its limit of streams.
    TicketFull,
}

/// One open stream; dropping it frees both slots.
pub struct StreamSlot {
    slots: StreamSlots,
    ticket_id: Uuid,
}

impl StreamSlots {
    pub fn new(limit: usize, per_ticket_limit: usize) -> Self {
        // Open against the cap, for the streams-near-the-cap alert.
        metrics::gauge!("waiting_room_streams_open").increment(0.0);
        metrics::gauge!("waiting_room_streams_limit").set(limit as f64);
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            limit,
            per_ticket: Arc::new(Mutex::new(HashMap::new())),
            per_ticket_limit,
        }
    }

    fn per_ticket(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        self.per_ticket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for one more stream of `ticket_id`.
    pub fn try_acquire(&self, ticket_id: Uuid) -> Result<StreamSlot, Refused> {
        let previous = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.limit).then_some(open + 1)
            })
            .map_err(|_| Refused::InstanceFull)?;
        {
            let mut per_ticket = self.per_ticket();
            let streams = per_ticket.entry(ticket_id).or_insert(0);
            if *streams >= self.per_ticket_limit {
                drop(per_ticket);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::TicketFull);
            }
            *streams += 1;
        }
        metrics::gauge!("waiting_room_streams_open").set((previous + 1) as f64);
        Ok(StreamSlot {
            slots: self.clone(),
            ticket_id,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        {
            let mut per_ticket = self.slots.per_ticket();
            if let Some(streams) = per_ticket.get_mut(&self.ticket_id) {
                *streams -= 1;
                if *streams == 0 {
                    per_ticket.remove(&self.ticket_id);
                }
            }
        }
        let previous = self.slots.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("waiting_room_streams_open").set((previous - 1) as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_freed_on_drop() {
        let slots = StreamSlots::new(2, 5);
        let first = slots.try_acquire(Uuid::now_v7()).expect("first slot");
        let _second = slots.try_acquire(Uuid::now_v7()).expect("second slot");
        assert_eq!(
            slots.try_acquire(Uuid::now_v7()).err(),
            Some(Refused::InstanceFull),
            "a third stream is refused"
        );
        drop(first);
        assert!(
            slots.try_acquire(Uuid::now_v7()).is_ok(),
            "a freed slot is reusable"
        );
    }

    #[test]
    fn one_ticket_holds_at_most_its_share() {
        let slots = StreamSlots::new(10, 2);
        let ticket = Uuid::now_v7();
        let first = slots.try_acquire(ticket).expect("first tab");
        let _second = slots.try_acquire(ticket).expect("second tab");
        assert_eq!(slots.try_acquire(ticket).err(), Some(Refused::TicketFull));
        let _other = slots
            .try_acquire(Uuid::now_v7())
            .expect("other tickets are not affected");
        drop(first);
        let _again = slots
            .try_acquire(ticket)
            .expect("a closed tab frees its slot");
        assert_eq!(
            slots.open.load(Ordering::Acquire),
            3,
            "a refused stream holds no instance slot"
        );
    }
}
