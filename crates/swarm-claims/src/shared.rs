//! One copy of each name: a state decoded from a snapshot gets a separate
//! string for every place a name appears; [`share_text`] makes the indexes
//! and records point at one [`Text`] per id, type and agent again, as
//! `apply()` builds them.

use std::collections::BTreeSet;

use crate::State;
use crate::state::{QueueKey, Text};

/// Replaces `text` with the pool's copy of it, adding it when new.
fn intern(pool: &mut BTreeSet<Text>, text: &mut Text) {
    match pool.get(&**text) {
        Some(kept) => *text = kept.clone(),
        None => {
            pool.insert(text.clone());
        }
    }
}

/// Makes every copy of an id, type or agent name in `state` one shared
/// string. Changes no value, only where equal strings live.
pub(crate) fn share_text(state: &mut State) {
    let mut names = BTreeSet::new();
    // Ids: the items map's key is the copy every index shares.
    for (id, item) in state.items.iter_mut() {
        let item = std::sync::Arc::make_mut(item);
        item.id = id.clone();
        intern(&mut names, &mut item.kind);
        if let Some(lease) = item.lease.as_mut() {
            intern(&mut names, &mut lease.agent);
        }
        for holder in item.stored_holders_mut() {
            intern(&mut names, &mut holder.agent);
        }
        for agent in item.event_agents_mut() {
            intern(&mut names, agent);
        }
    }
    let items = &state.items;
    let id_of = |id: &Text| {
        items
            .get_key_value(&**id)
            .map_or_else(|| id.clone(), |(k, _)| k.clone())
    };
    state.by_key = std::mem::take(&mut state.by_key)
        .into_iter()
        .map(|(key, id)| match items.get(&*id) {
            Some(item) if *item.idempotency_key == *key => {
                (item.idempotency_key.clone(), item.id.clone())
            }
            _ => (key, id_of(&id)),
        })
        .collect();
    for id in state.live.values_mut() {
        *id = id_of(id);
    }
    let requeue = |q: &mut BTreeSet<QueueKey>| {
        *q = std::mem::take(q)
            .into_iter()
            .map(|k| QueueKey {
                id: id_of(&k.id),
                ..k
            })
            .collect();
    };
    requeue(&mut state.queue);
    for q in state.queue_by_kind.values_mut() {
        requeue(q);
    }
    state.ended = std::mem::take(&mut state.ended)
        .into_iter()
        .map(|(at, id)| (at, id_of(&id)))
        .collect();
}

/// The empty string, shared: items submitted without an idempotency key
/// (most of them) allocate nothing for it.
pub(crate) fn empty_text() -> Text {
    Text::new()
}
