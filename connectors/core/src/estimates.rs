//! Row estimates kept between queries.
//!
//! A planner wants a table's size (join order, partition count) for every query, but asking
//! the store each time puts a round trip, sometimes a slow one, before every scan. An
//! estimate is only ever inexact, so a recent one is as good: a table's first query waits for
//! its count, later ones plan with the cached count, and a count older than the maximum age
//! is refreshed in the background while queries go on with the old one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::TableRef;

/// How long a count serves queries before it is refreshed.
pub const ESTIMATE_MAX_AGE: Duration = Duration::from_secs(60);

/// The cached row counts of one source's tables.
#[derive(Debug, Default)]
pub struct RowEstimates {
    entries: Arc<Mutex<HashMap<TableRef, Entry>>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    rows: Option<u64>,
    taken: Instant,
    refreshing: bool,
}

impl RowEstimates {
    /// No counts yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `table`'s row count, from the cache if there is one, otherwise from `count` (awaited).
    /// A cached count older than `max_age` is returned as is, and `count` is run in the
    /// background to replace it. `None` from `count` means the store could not tell.
    pub async fn get<F, Fut>(&self, table: &TableRef, max_age: Duration, count: F) -> Option<u64>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<u64>> + Send + 'static,
    {
        let cached = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            match entries.get_mut(table) {
                Some(entry) if entry.refreshing || entry.taken.elapsed() < max_age => {
                    return entry.rows;
                }
                Some(entry) => {
                    entry.refreshing = true;
                    Some(entry.rows)
                }
                None => None,
            }
        };
        let counting = count();
        match cached {
            Some(rows) => {
                let entries = Arc::clone(&self.entries);
                let table = table.clone();
                tokio::spawn(async move {
                    let counted = counting.await;
                    store(&entries, table, counted);
                });
                rows
            }
            None => {
                let rows = counting.await;
                store(&self.entries, table.clone(), rows);
                rows
            }
        }
    }

    /// Forgets every count: the next query of each table waits for a fresh one.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

fn store(entries: &Mutex<HashMap<TableRef, Entry>>, table: TableRef, rows: Option<u64>) {
    let entry = Entry {
        rows,
        taken: Instant::now(),
        refreshing: false,
    };
    entries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(table, entry);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn table() -> TableRef {
        TableRef {
            namespace: "db".into(),
            name: "t".into(),
        }
    }

    /// A count that returns how many times it was called.
    fn counter(calls: &Arc<AtomicU64>) -> impl FnOnce() -> std::future::Ready<Option<u64>> {
        let calls = Arc::clone(calls);
        move || std::future::ready(Some(calls.fetch_add(1, Ordering::SeqCst) + 1))
    }

    #[tokio::test]
    async fn a_recent_count_is_reused_without_asking_again() {
        let (estimates, calls) = (RowEstimates::new(), Arc::new(AtomicU64::new(0)));
        let long = Duration::from_secs(3600);
        assert_eq!(
            estimates.get(&table(), long, counter(&calls)).await,
            Some(1)
        );
        assert_eq!(
            estimates.get(&table(), long, counter(&calls)).await,
            Some(1)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_old_count_is_served_while_a_new_one_is_taken_in_the_background() {
        let (estimates, calls) = (RowEstimates::new(), Arc::new(AtomicU64::new(0)));
        assert_eq!(
            estimates
                .get(&table(), Duration::ZERO, counter(&calls))
                .await,
            Some(1)
        );
        // Stale: the old count answers, and a refresh starts.
        assert_eq!(
            estimates
                .get(&table(), Duration::ZERO, counter(&calls))
                .await,
            Some(1)
        );
        for _ in 0..100 {
            if calls.load(Ordering::SeqCst) == 2
                && !estimates.entries.lock().unwrap()[&table()].refreshing
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        let long = Duration::from_secs(3600);
        assert_eq!(
            estimates.get(&table(), long, counter(&calls)).await,
            Some(2)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn clearing_makes_the_next_query_wait_for_a_fresh_count() {
        let (estimates, calls) = (RowEstimates::new(), Arc::new(AtomicU64::new(0)));
        let long = Duration::from_secs(3600);
        estimates.get(&table(), long, counter(&calls)).await;
        estimates.clear();
        assert_eq!(
            estimates.get(&table(), long, counter(&calls)).await,
            Some(2)
        );
    }
}
