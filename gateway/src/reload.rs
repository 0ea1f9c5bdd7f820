//! Applying catalog.toml edits to a running gateway: a file watch and SIGHUP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use polygate_catalog::Catalog;
use tokio::sync::mpsc;

/// Editors save in bursts (truncate, write, rename); one reload per burst is enough.
const SETTLE: Duration = Duration::from_millis(200);

/// Keeps the watch alive; dropping it stops reloading.
pub struct ReloadWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReloadWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reloads `catalog` whenever its file changes or the process receives SIGHUP.
///
/// A reload that fails (an invalid edit) is logged and the catalog in force stays.
pub fn watch(catalog: Arc<Catalog>) -> notify::Result<ReloadWatch> {
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let file = catalog.path().to_path_buf();
    let file_name = file.file_name().map(ToOwned::to_owned);
    let events = tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref())
            && (event.kind.is_create() || event.kind.is_modify() || event.kind.is_remove())
        {
            let _ = events.send(());
        }
    })?;
    // The directory is watched, not the file: editors that save by renaming a new file over the
    // old one would otherwise end the watch at the first save.
    let directory = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher.watch(directory, RecursiveMode::NonRecursive)?;
    spawn_sighup_listener(tx);
    let task = tokio::spawn(reload_on_signal(catalog, rx));
    Ok(ReloadWatch {
        _watcher: watcher,
        task,
    })
}

#[cfg(unix)]
fn spawn_sighup_listener(tx: mpsc::UnboundedSender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
            });
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reloads follow file edits only")
        }
    }
}

#[cfg(not(unix))]
fn spawn_sighup_listener(_tx: mpsc::UnboundedSender<()>) {}

async fn reload_on_signal(catalog: Arc<Catalog>, mut rx: mpsc::UnboundedReceiver<()>) {
    while rx.recv().await.is_some() {
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        match catalog.reload().await {
            Ok(summary) => tracing::info!(
                added = ?summary.added,
                removed = ?summary.removed,
                changed = ?summary.changed,
                "catalog reloaded from {}",
                catalog.path().display()
            ),
            Err(error) => {
                tracing::error!("catalog not reloaded, the previous one stays in force: {error}")
            }
        }
    }
}
