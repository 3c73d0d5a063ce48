//! The bound on live ticket streams per instance: each open stream holds a slot, and a
//! stream beyond the configured limit is refused (503) before it starts, so a crowd
//! cannot exhaust the process's file descriptors or memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct StreamSlots {
    open: Arc<AtomicUsize>,
    limit: usize,
}

/// One open stream; dropping it frees the slot.
pub struct StreamSlot {
    open: Arc<AtomicUsize>,
}

impl StreamSlots {
    pub fn new(limit: usize) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// A slot, or `None` when `limit` streams are already open.
    pub fn try_acquire(&self) -> Option<StreamSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.limit).then_some(open + 1)
            })
            .ok()
            .map(|previous| {
                metrics::gauge!("waiting_room_streams_open").set((previous + 1) as f64);
                StreamSlot {
                    open: self.open.clone(),
                }
            })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let previous = self.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("waiting_room_streams_open").set((previous - 1) as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_freed_on_drop() {
        let slots = StreamSlots::new(2);
        let first = slots.try_acquire().expect("first slot");
        let _second = slots.try_acquire().expect("second slot");
        assert!(slots.try_acquire().is_none(), "a third stream is refused");
        drop(first);
        assert!(slots.try_acquire().is_some(), "a freed slot is reusable");
    }
}
