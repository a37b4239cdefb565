//! What a running sync has recorded: the ids of the keys its batches wrote or found unchanged.
//! The writer keeps them as a bitset (one bit per key id: 125 KB per million keys, however
//! often the listing repeats a key), which finds re-sent batches and keys listed twice. The
//! database keeps one array per batch (`model_sync_seen`, written in the batch's transaction):
//! the end of a listing reads it to find the current models a listing lacked, and a writer
//! that restarts, or cannot tell whether its last commit happened, reloads it.

use futures::{pin_mut, TryStreamExt};

use crate::store::{Database, StoreError};

/// A set of key ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeenKeys {
    words: Vec<u64>,
    len: u64,
}

impl SeenKeys {
    pub fn contains(&self, key_id: i64) -> bool {
        let Ok(id) = u64::try_from(key_id) else {
            return false;
        };
        self.words
            .get((id / 64) as usize)
            .is_some_and(|word| word & (1 << (id % 64)) != 0)
    }

    pub fn insert(&mut self, key_id: i64) {
        let Ok(id) = u64::try_from(key_id) else {
            return;
        };
        let index = (id / 64) as usize;
        if index >= self.words.len() {
            self.words.resize(index + 1, 0);
        }
        let bit = 1 << (id % 64);
        if self.words[index] & bit == 0 {
            self.words[index] |= bit;
            self.len += 1;
        }
    }

    /// How many distinct keys.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The keys sync `sync_id` recorded so far, as committed. Streams the per-batch arrays, so
/// memory stays the bitset's.
pub async fn load_seen(database: &Database, sync_id: i64) -> Result<SeenKeys, StoreError> {
    let client = database.pool.get().await?;
    let rows = client
        .query_raw(
            "SELECT key_ids FROM model_sync_seen WHERE sync_id = $1",
            [&sync_id as &(dyn tokio_postgres::types::ToSql + Sync)],
        )
        .await?;
    pin_mut!(rows);
    let mut seen = SeenKeys::default();
    while let Some(row) = rows.try_next().await? {
        let key_ids: Vec<i64> = row.get(0);
        for key_id in key_ids {
            seen.insert(key_id);
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bit_per_key_id() {
        let mut seen = SeenKeys::default();
        assert!(!seen.contains(5) && seen.is_empty());
        for id in [5, 64, 1_000_000, 5, -3] {
            seen.insert(id);
        }
        assert_eq!(seen.len(), 3);
        assert!(seen.contains(5) && seen.contains(64) && seen.contains(1_000_000));
        assert!(!seen.contains(63) && !seen.contains(65) && !seen.contains(-3) && !seen.contains(2_000_000));
        // A million keys take 125 KB.
        assert_eq!(seen.words.len() * 8, 125_008);
    }
}
