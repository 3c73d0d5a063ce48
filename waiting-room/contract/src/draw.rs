//! The pre-queue draw: a verifiable random order for everyone who joined before the sale
//! started.
//!
//! The operator's seed (32 random bytes) is committed to before the start: its SHA-256
//! is public from the moment the event is scheduled. At the start the activator fixes
//! the pre-queue as the offsets `[first, end)` of the event's partition (its serving
//! counter and the partition's end at that instant) and the seed is published. The ticket
//! at offset `first + i` then takes place `first + rank(i)` in the line, where `rank` is
//! a keyed permutation of `0..n` (`n = end - first`) that depends on the seed and `n`
//! only. Anyone holding the seed and the Kafka records recomputes every rank
//! (`waiting-room verify-draw`), and nobody, the operator included, can choose another
//! seed after the commitment was published.
//!
//! The permutation is an 8-round Feistel network over the smallest even-bit domain that
//! holds `n`, with SHA-256 as its round function, walked in cycles until it lands below
//! `n`. It is computed per ticket in constant memory, so a pre-queue of millions needs no
//! table on any instance.

use std::fmt;

use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Versioned domain separation for the round function: a future scheme changes it.
const ROUND_LABEL: &[u8] = b"waiting-room draw v1";
const ROUNDS: u8 = 8;

/// The draw's secret until the sale starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DrawSeed([u8; 32]);

impl DrawSeed {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// From the database column or a verifier's argument; anything but 32 bytes is refused.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// From 64 hexadecimal digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        platform::hex::encode(&self.0)
    }

    /// What is published before the start: SHA-256 of the seed's bytes, in hex.
    pub fn commitment(&self) -> String {
        platform::hex::encode(&Sha256::digest(self.0))
    }
}

/// Never printed by accident (logs, debug output): only [`DrawSeed::to_hex`] shows it.
impl fmt::Debug for DrawSeed {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "DrawSeed(commitment {})", self.commitment())
    }
}

/// The pre-queue: the partition's offsets `[first, end)` at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawRange {
    pub partition: i32,
    pub first: i64,
    pub end: i64,
}

impl DrawRange {
    /// From the `events.draw_*` columns: all three, or no range yet.
    pub fn from_columns(
        partition: Option<i32>,
        first: Option<i64>,
        end: Option<i64>,
    ) -> Option<Self> {
        Some(Self {
            partition: partition?,
            first: first?,
            end: end?,
        })
    }

    pub fn size(&self) -> u64 {
        u64::try_from(self.end - self.first).unwrap_or(0)
    }

    pub fn contains(&self, offset: i64) -> bool {
        (self.first..self.end).contains(&offset)
    }
}

/// A fixed draw: the seed and the pre-queue it orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    pub seed: DrawSeed,
    pub range: DrawRange,
}

impl Draw {
    /// The place in line of the record at `offset`: drawn inside the pre-queue, its own
    /// offset after it (later arrivals queue behind in arrival order).
    pub fn queue_number(&self, offset: i64) -> i64 {
        if !self.range.contains(offset) {
            return offset;
        }
        let index = u64::try_from(offset - self.range.first).unwrap_or(0);
        let rank = rank(&self.seed, self.range.size(), index);
        self.range.first + i64::try_from(rank).unwrap_or(0)
    }

    /// The Kafka offset the activator may commit for serving counter `serving`: inside
    /// the pre-queue the counter counts places, not offsets, so nothing past its start
    /// is committed until the whole pre-queue is reached.
    pub fn committable_offset(&self, serving: i64) -> i64 {
        if self.range.contains(serving) {
            self.range.first
        } else {
            serving
        }
    }

    /// The last offset that may hold the record at place `serving`: any of the
    /// pre-queue's while the counter is inside it.
    pub fn last_offset_for(&self, serving: i64) -> i64 {
        if self.range.contains(serving) {
            self.range.end - 1
        } else {
            serving
        }
    }
}

/// The rank (0-based) drawn for the `index`-th ticket of a pre-queue of `size`: a
/// permutation of `0..size` keyed by the seed.
pub fn rank(seed: &DrawSeed, size: u64, index: u64) -> u64 {
    if size <= 1 || index >= size {
        return index;
    }
    let half_bits = half_bits(size);
    let mut value = index;
    loop {
        value = feistel(seed, size, half_bits, value);
        if value < size {
            return value;
        }
    }
}

/// Half the bits of the smallest even-bit domain that holds `size` values (at least 1).
fn half_bits(size: u64) -> u32 {
    let bits = u64::BITS - (size - 1).leading_zeros();
    bits.div_ceil(2).max(1)
}

fn feistel(seed: &DrawSeed, size: u64, half_bits: u32, value: u64) -> u64 {
    let mask = (1u64 << half_bits) - 1;
    let (mut left, mut right) = (value >> half_bits, value & mask);
    for round in 0..ROUNDS {
        let mut hasher = Sha256::new();
        hasher.update(seed.as_bytes());
        hasher.update(ROUND_LABEL);
        hasher.update([round]);
        hasher.update(size.to_be_bytes());
        hasher.update(right.to_be_bytes());
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let mixed = u64::from_be_bytes(first) & mask;
        (left, right) = (right, left ^ mixed);
    }
    (left << half_bits) | right
}

/// Records the pre-queue of `event_id` unless one is recorded already, and returns the
/// one that stands: the first activator to fix it wins, and a restarted one finds it.
/// Only a shuffled sale that has started (by the database's clock) is drawn: an
/// activator with a stale catalog cannot draw a sale that was moved or changed; it gets
/// `RowNotFound` and looks again.
pub async fn fix_range(
    pool: &PgPool,
    event_id: &str,
    proposed: DrawRange,
) -> Result<DrawRange, sqlx::Error> {
    sqlx::query(
        "UPDATE events SET draw_partition = $2, draw_first_offset = $3, draw_end_offset = $4,
                updated_at = now()
         WHERE event_id = $1 AND draw_end_offset IS NULL
           AND queue_order = 'shuffle_prequeue' AND sale_starts_at <= now()",
    )
    .bind(event_id)
    .bind(proposed.partition)
    .bind(proposed.first)
    .bind(proposed.end)
    .execute(pool)
    .await?;
    let (partition, first, end): (Option<i32>, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT draw_partition, draw_first_offset, draw_end_offset FROM events WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await?;
    DrawRange::from_columns(partition, first, end).ok_or(sqlx::Error::RowNotFound)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn seed(label: u64) -> DrawSeed {
        DrawSeed::from_bytes(Sha256::digest(label.to_be_bytes()).into())
    }

    #[test]
    fn ranks_are_a_permutation_for_every_size() {
        for size in 0..300u64 {
            let mut ranks: Vec<u64> = (0..size).map(|index| rank(&seed(7), size, index)).collect();
            ranks.sort_unstable();
            assert_eq!(ranks, (0..size).collect::<Vec<_>>(), "size {size}");
        }
    }

    #[test]
    fn every_order_of_four_is_about_equally_likely() {
        // 24 orders, 200 expected each over 4,800 seeds; chi-square with 23 degrees of
        // freedom stays below 49.7 with probability 0.999 for a uniform draw.
        let mut counts: HashMap<Vec<u64>, u32> = HashMap::new();
        for label in 0..4_800 {
            let order: Vec<u64> = (0..4).map(|index| rank(&seed(label), 4, index)).collect();
            *counts.entry(order).or_default() += 1;
        }
        assert_eq!(counts.len(), 24);
        let chi_square: f64 = counts
            .values()
            .map(|&count| (f64::from(count) - 200.0).powi(2) / 200.0)
            .sum();
        assert!(chi_square < 49.7, "chi-square {chi_square}");
    }

    #[test]
    fn the_seed_and_the_size_decide_the_ranks() {
        let ranks = |seed: &DrawSeed, size| {
            (0..size)
                .map(|index| rank(seed, size, index))
                .collect::<Vec<u64>>()
        };
        assert_eq!(ranks(&seed(1), 50), ranks(&seed(1), 50));
        assert_ne!(ranks(&seed(1), 50), ranks(&seed(2), 50));
        assert_ne!(ranks(&seed(1), 50)[..10], ranks(&seed(1), 51)[..10]);
    }

    #[test]
    fn places_are_drawn_inside_the_pre_queue_only() {
        let draw = Draw {
            seed: seed(3),
            range: DrawRange {
                partition: 0,
                first: 100,
                end: 110,
            },
        };
        let mut places: Vec<i64> = (100..110).map(|offset| draw.queue_number(offset)).collect();
        places.sort_unstable();
        assert_eq!(places, (100..110).collect::<Vec<_>>());
        assert_eq!(draw.queue_number(99), 99);
        assert_eq!(draw.queue_number(110), 110);
        assert_eq!(draw.committable_offset(105), 100);
        assert_eq!(draw.committable_offset(110), 110);
        assert_eq!(draw.last_offset_for(100), 109);
        assert_eq!(draw.last_offset_for(120), 120);
    }

    #[test]
    fn seeds_travel_as_hex_and_commit_with_sha256() {
        let seed = DrawSeed::from_bytes([0xab; 32]);
        assert_eq!(DrawSeed::from_hex(&seed.to_hex()), Some(seed));
        assert_eq!(DrawSeed::from_hex("ab"), None);
        assert_eq!(DrawSeed::from_hex(&"zz".repeat(32)), None);
        assert_eq!(
            DrawSeed::from_bytes([0; 32]).commitment(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert!(!format!("{seed:?}").contains(&seed.to_hex()));
    }
}
