//! Reading ahead: a task of a scan's own produces the next item (a batch, a page) while the
//! scan works on the current one.

use std::future::Future;

use datafusion::common::runtime::SpawnedTask;
use tokio::sync::mpsc;

/// Items produced one ahead by a task. Dropping it aborts the task, and with it whatever
/// the task holds (a cursor, a search context guard), so that a scan stopped early by a
/// LIMIT or a cancel releases its remote resources.
pub struct Prefetched<T> {
    items: mpsc::Receiver<T>,
    _producer: SpawnedTask<()>,
}

impl<T: Send + 'static> Prefetched<T> {
    /// Spawns `produce`, which sends its items into the sender it is given; a send fails
    /// once the consumer is gone.
    pub fn spawn<F, Fut>(produce: F) -> Self
    where
        F: FnOnce(mpsc::Sender<T>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (sender, items) = mpsc::channel(1);
        Self {
            items,
            _producer: SpawnedTask::spawn(produce(sender)),
        }
    }

    /// The next item, or `None` once the task has ended.
    pub async fn next(&mut self) -> Option<T> {
        self.items.recv().await
    }
}

/// Runs `opening`, a request that makes something on the store (a cursor, a point in time, a
/// scroll), in a task of its own that finishes even if the caller is dropped while it waits.
/// The store makes the thing before it answers, and only its answer says what to close: a
/// request dropped in flight would leave the thing open until the store's own timeout.
/// `opening` returns it in a guard that closes it when dropped, and must bound its own wait.
pub async fn open_detached<T, F>(opening: F) -> datafusion::error::Result<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(opening)
        .await
        .map_err(|e| datafusion::error::DataFusionError::ExecutionJoin(Box::new(e)))
}
