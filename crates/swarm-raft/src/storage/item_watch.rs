//! Which items the applied entries changed, for those who watch one item.
//!
//! A watcher of one item (`WatchWork`) used to wake on every applied index
//! and re-read its item: with thousands of watchers that is thousands of
//! wake-ups and lookups per entry, most of the leader's CPU when clients
//! wait on their workflows' results. Here each watched item has its own
//! version, bumped when an applied command's answer names the item (a
//! submit, grant, renewal, checkpoint, completion...), and for every watched
//! item on a tick (its answer names the expired leases, but time also frees
//! delayed items and ends durable timers), a new leader's lease extension,
//! and when a snapshot replaces the state. Watchers still re-read now and
//! then in case of a miss.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use swarm_claims::Response;
use tokio::sync::watch;

/// Versions of the items someone watches.
#[derive(Default)]
pub struct ItemWatch {
    items: Mutex<HashMap<String, Watched>>,
}

struct Watched {
    version: watch::Sender<u64>,
    /// Live [`ItemChanges`] for the item; the entry goes with the last.
    watchers: usize,
}

/// Wakes when the watched item may have changed; stops watching on drop.
pub struct ItemChanges {
    hub: Arc<ItemWatch>,
    id: String,
    rx: watch::Receiver<u64>,
}

impl ItemChanges {
    /// Resolves once the item may have changed since the last call (or since
    /// this watch began); an error once the hub is gone.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.rx.changed().await
    }
}

impl Drop for ItemChanges {
    fn drop(&mut self) {
        let mut items = self.hub.lock();
        if let Some(w) = items.get_mut(&self.id) {
            w.watchers = w.watchers.saturating_sub(1);
            if w.watchers == 0 {
                items.remove(&self.id);
            }
        }
    }
}

impl ItemWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching item `id`.
    pub fn watch(self: &Arc<Self>, id: &str) -> ItemChanges {
        let mut items = self.lock();
        let w = items.entry(id.to_string()).or_insert_with(|| Watched {
            version: watch::channel(0).0,
            watchers: 0,
        });
        w.watchers += 1;
        ItemChanges {
            hub: self.clone(),
            id: id.to_string(),
            rx: w.version.subscribe(),
        }
    }

    /// Bumps every watched item that `response` names (every one for a
    /// tick or a lease extension).
    pub fn touched(&self, response: &Response) {
        let items = self.lock();
        if items.is_empty() {
            return;
        }
        let bump = |id: &str| {
            if let Some(w) = items.get(id) {
                w.version.send_modify(|v| *v += 1);
            }
        };
        let bump_all = || {
            for w in items.values() {
                w.version.send_modify(|v| *v += 1);
            }
        };
        fn walk(response: &Response, bump: &dyn Fn(&str), bump_all: &dyn Fn()) {
            match response {
                Response::Submitted { item, .. } | Response::Item(item) => bump(&item.id),
                Response::Granted(items) => items.iter().for_each(|i| bump(&i.id)),
                Response::Renewed { renewed, .. } => renewed.iter().for_each(|i| bump(&i.id)),
                Response::Fired { item, .. } => {
                    if let Some(item) = item {
                        bump(&item.id)
                    }
                }
                Response::Batch(answers) => answers
                    .iter()
                    .filter_map(|a| a.as_ref().ok())
                    .for_each(|r| walk(r, bump, bump_all)),
                // Handled above (every item), inside a batch too.
                Response::Expired(_) | Response::Extended(_) => bump_all(),
                // No item's events change: removed finished items (a watcher
                // of one has ended), and the rest names no item.
                Response::Compacted(_)
                | Response::Registered
                | Response::Limit(_)
                | Response::Deleted(_)
                | Response::Schedule(_) => {}
            }
        }
        walk(response, &bump, &bump_all);
    }

    /// Bumps every watched item (the whole state was replaced).
    pub fn touched_all(&self) {
        for w in self.lock().values() {
            w.version.send_modify(|v| *v += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use swarm_claims::WorkItem;

    fn item(id: &str) -> WorkItem {
        let mut state = swarm_claims::State::new();
        let submitted = swarm_claims::apply(
            &mut state,
            swarm_claims::Command::Submit(swarm_claims::command::Submit {
                id: id.into(),
                idempotency_key: String::new(),
                kind: "t".into(),
                priority: 0,
                requires: vec![],
                payload: "null".into(),
                max_attempts: 0,
                now: 1,
            }),
        )
        .unwrap();
        match submitted {
            Response::Submitted { item, .. } => item,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_watcher_wakes_for_its_item_only_and_the_entry_goes_with_the_last_watcher() {
        let hub = Arc::new(ItemWatch::default());
        let mut a = hub.watch("a");
        let mut b = hub.watch("b");
        hub.touched(&Response::Batch(vec![Ok(Response::Item(item("a")))]));
        tokio::time::timeout(std::time::Duration::from_secs(1), a.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(!b.rx.has_changed().unwrap(), "b was not named");
        hub.touched(&Response::Submitted {
            item: item("b"),
            created: true,
        });
        assert!(b.rx.has_changed().unwrap());
        b.changed().await.unwrap();
        let mut a2 = hub.watch("a");
        hub.touched(&Response::Expired(vec![]));
        assert!(a2.rx.has_changed().unwrap(), "a tick wakes every watcher");
        a2.changed().await.unwrap();
        drop(a2);
        drop(a);
        assert!(!hub.lock().contains_key("a"));
        hub.touched_all();
        b.changed().await.unwrap();
        drop(b);
        assert!(hub.lock().is_empty());
    }
}
