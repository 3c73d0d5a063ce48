//! A queue's backlog: the records the dispatcher has handed to the queue's worker and
//! the worker has not reached yet, in the channel between them and in the worker's
//! buffer. The count lives here only: the dispatcher reads it for back-pressure (it
//! pauses a partition far behind) and the `activator_waiting` gauge, and every change
//! to the buffer keeps it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    pub fn offset(&self) -> i64 {
        match self {
            Self::Entry(entry) => entry.queue_number(),
            Self::Poison(raw) => raw.offset,
        }
    }
}

/// The dispatcher's end.
pub struct BacklogSender {
    records: mpsc::UnboundedSender<Incoming>,
    count: Arc<AtomicUsize>,
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
}

/// The worker's end: the channel and the buffer, in offset order.
pub struct Backlog {
    records: mpsc::UnboundedReceiver<Incoming>,
    buffer: VecDeque<Incoming>,
    count: Arc<AtomicUsize>,
}

/// A connected sender and backlog.
pub fn channel() -> (BacklogSender, Backlog) {
    let (records, receiver) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    (
        BacklogSender {
            records,
            count: count.clone(),
        },
        Backlog {
            records: receiver,
            buffer: VecDeque::new(),
            count,
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

    /// Buffers a received record.
    pub fn push(&mut self, incoming: Incoming) {
        self.buffer.push_back(incoming);
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

    /// The buffered records from the front, to read and settle in place.
    pub fn front_mut(&mut self) -> impl Iterator<Item = &mut Incoming> {
        self.buffer.iter_mut()
    }

    /// Drops buffered entries the serving counter has passed.
    pub fn drop_reached(&mut self, serving: i64) {
        let mut dropped = 0;
        while let Some(Incoming::Entry(entry)) = self.buffer.front() {
            if entry.queue_number() >= serving {
                break;
            }
            self.buffer.pop_front();
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
            issued_ms: 0,
        })
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
                backlog.push(incoming);
            }
        }
        assert_eq!(sender.len(), 4);
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
