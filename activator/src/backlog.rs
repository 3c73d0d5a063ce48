//! A queue's backlog: the records the dispatcher has handed to the queue's worker and
//! the worker has not reached yet, in the channel between them and in the worker's
//! buffer. The count lives here only: the dispatcher reads it for back-pressure (it
//! pauses a partition far behind) and the `activator_waiting` gauge, and every change
//! to the buffer keeps it.
//!
//! The buffer is ordered by place in line, which is the offset except inside a drawn
//! pre-queue (see `contract::draw`): there records arrive in offset order and are
//! served in drawn order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::activation::QueueEntry;
use crate::dead_letter::RawRecord;

/// A record as it arrives: a ticket, or a record to dead-letter.
pub enum Incoming {
    Entry(QueueEntry),
    Poison(RawRecord),
}

impl Incoming {
    /// The record's offset, as the dispatcher hands it over (the buffer keeps it beside
    /// the place a draw gives the entry).
    pub fn offset(&self) -> i64 {
        match self {
            Self::Entry(entry) => entry.queue_number(),
            Self::Poison(raw) => raw.offset,
        }
    }

    /// Gives the record its place in line (a poison record keeps its raw offset: it is
    /// placed by its buffer key).
    pub fn renumber(&mut self, number: i64) {
        match self {
            Self::Entry(
                QueueEntry::Ticket { queue_number, .. } | QueueEntry::DeadLettered { queue_number },
            ) => *queue_number = number,
            Self::Poison(_) => {}
        }
    }
}

/// The dispatcher's end.
pub struct BacklogSender {
    records: mpsc::UnboundedSender<Incoming>,
    count: Arc<AtomicUsize>,
    unbounded: Arc<AtomicBool>,
}

impl BacklogSender {
    /// Hands a record to the worker; the backlog's length afterwards.
    pub fn send(&self, incoming: Incoming) -> usize {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.records.send(incoming).is_err() {
            // The worker has stopped: nothing waits in its backlog.
            return self.count.fetch_sub(1, Ordering::Relaxed) - 1;
        }
        count
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether the worker needs every record before it can serve (a drawn pre-queue):
    /// pausing the partition then would stall the queue for good.
    pub fn unbounded(&self) -> bool {
        self.unbounded.load(Ordering::Relaxed)
    }
}

/// A buffered record and its offset (its key in the buffer is its place in line).
struct Buffered {
    offset: i64,
    incoming: Incoming,
}

/// The worker's end: the channel and the buffer, by place in line.
pub struct Backlog {
    records: mpsc::UnboundedReceiver<Incoming>,
    buffer: BTreeMap<i64, Buffered>,
    count: Arc<AtomicUsize>,
    unbounded: Arc<AtomicBool>,
}

/// A connected sender and backlog.
pub fn channel() -> (BacklogSender, Backlog) {
    let (records, receiver) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    let unbounded = Arc::new(AtomicBool::new(false));
    (
        BacklogSender {
            records,
            count: count.clone(),
            unbounded: unbounded.clone(),
        },
        Backlog {
            records: receiver,
            buffer: BTreeMap::new(),
            count,
            unbounded,
        },
    )
}

impl Backlog {
    /// The next record from the dispatcher; `None` once it has gone.
    pub async fn receive(&mut self) -> Option<Incoming> {
        self.records.recv().await
    }

    /// A record already sent, if any, without waiting.
    pub fn try_receive(&mut self) -> Option<Incoming> {
        self.records.try_recv().ok()
    }

    /// Buffers a received record at place `number`; a record read twice (a re-read
    /// overlapping records still in flight) is kept once.
    pub fn push(&mut self, number: i64, incoming: Incoming) {
        let offset = incoming.offset();
        self.place(number, offset, incoming);
    }

    /// Places every buffered record anew from its offset (a draw was fixed while they
    /// waited).
    pub fn renumber(&mut self, place: impl Fn(i64) -> i64) {
        let buffered = std::mem::take(&mut self.buffer);
        for Buffered { offset, incoming } in buffered.into_values() {
            self.place(place(offset), offset, incoming);
        }
    }

    fn place(&mut self, number: i64, offset: i64, mut incoming: Incoming) {
        incoming.renumber(number);
        if self
            .buffer
            .insert(number, Buffered { offset, incoming })
            .is_some()
        {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Asks the dispatcher never to pause the partition (see [`BacklogSender::unbounded`]).
    pub fn set_unbounded(&self, unbounded: bool) {
        self.unbounded.store(unbounded, Ordering::Relaxed);
    }

    /// The first place buffered.
    pub fn first_number(&self) -> Option<i64> {
        self.buffer.keys().next().copied()
    }

    /// Forgets a received record without buffering it.
    pub fn discard(&mut self, incoming: Incoming) {
        drop(incoming);
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// Records received and not reached (channel and buffer).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// The buffered records from the front with their places, to read and settle in
    /// place.
    pub fn front_mut(&mut self) -> impl Iterator<Item = (i64, &mut Incoming)> {
        self.buffer
            .iter_mut()
            .map(|(number, buffered)| (*number, &mut buffered.incoming))
    }

    /// Drops buffered entries the serving counter has passed.
    pub fn drop_reached(&mut self, serving: i64) {
        let mut dropped = 0;
        while let Some(entry) = self.buffer.first_entry() {
            if *entry.key() >= serving || !matches!(entry.get().incoming, Incoming::Entry(_)) {
                break;
            }
            entry.remove();
            dropped += 1;
        }
        self.count.fetch_sub(dropped, Ordering::Relaxed);
    }

    /// Forgets the whole buffer (the records will be read again).
    pub fn clear(&mut self) {
        self.count.fetch_sub(self.buffer.len(), Ordering::Relaxed);
        self.buffer.clear();
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn ticket(queue_number: i64) -> Incoming {
        Incoming::Entry(QueueEntry::Ticket {
            queue_number,
            ticket_id: Uuid::nil(),
            event_id: "e".into(),
            issued_ms: queue_number,
        })
    }

    #[test]
    fn a_drawn_pre_queue_is_served_in_drawn_order() {
        let (sender, mut backlog) = channel();
        for offset in 0..4 {
            sender.send(ticket(offset));
        }
        while let Some(incoming) = backlog.try_receive() {
            backlog.push(incoming.offset(), incoming);
        }
        // Offsets 0..3 drawn in reverse.
        backlog.renumber(|offset| 3 - offset);
        // The ticket at offset k was issued at k ms: (place, entry's number, offset).
        let served = |backlog: &mut Backlog| -> Vec<(i64, i64, i64)> {
            backlog
                .front_mut()
                .map(|(number, incoming)| match incoming {
                    Incoming::Entry(QueueEntry::Ticket {
                        queue_number,
                        issued_ms,
                        ..
                    }) => (number, *queue_number, *issued_ms),
                    _ => panic!("a ticket"),
                })
                .collect()
        };
        assert_eq!(
            served(&mut backlog),
            vec![(0, 0, 3), (1, 1, 2), (2, 2, 1), (3, 3, 0)]
        );
        assert_eq!(backlog.first_number(), Some(0));
        assert_eq!(sender.len(), 4);
        // Placed from the kept offsets, so placing again changes nothing.
        backlog.renumber(|offset| 3 - offset);
        assert_eq!(
            served(&mut backlog),
            vec![(0, 0, 3), (1, 1, 2), (2, 2, 1), (3, 3, 0)]
        );
        assert_eq!(sender.len(), 4);
    }

    #[tokio::test]
    async fn the_count_follows_every_record_from_send_to_reached() {
        let (sender, mut backlog) = channel();
        for offset in 0..5 {
            assert_eq!(sender.send(ticket(offset)), offset as usize + 1);
        }
        while let Some(incoming) = backlog.try_receive() {
            if incoming.offset() == 4 {
                backlog.discard(incoming);
            } else {
                backlog.push(incoming.offset(), incoming);
            }
        }
        assert_eq!(sender.len(), 4);
        sender.send(ticket(3));
        let again = backlog.try_receive().expect("sent");
        backlog.push(again.offset(), again);
        assert_eq!(sender.len(), 4, "a record read twice is buffered once");
        backlog.drop_reached(2);
        assert_eq!(sender.len(), 2);
        backlog.clear();
        assert_eq!(sender.len(), 0);
        assert!(backlog.is_empty());
        drop(backlog);
        assert_eq!(
            sender.send(ticket(5)),
            0,
            "a stopped worker's backlog stays empty"
        );
    }
}
