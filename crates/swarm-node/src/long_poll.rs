//! Long-poll claims. A claim with `wait_ms` that finds nothing claimable on
//! this node's replica waits, without proposing anything, until an applied
//! entry makes matching work appear or the wait ends; then it proposes the
//! claim. Waiters with the same filters (types and capabilities) form one
//! line and are served first come, first served: only the head of a line
//! watches the replica, the others queue behind it on a fair lock. A waiter
//! whose client goes away is dropped with its call, and leaves its line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One line of waiters with the same filters.
type Line = Arc<tokio::sync::Mutex<()>>;

/// What a line is for: the types (sorted) and capabilities (sorted).
type Filters = (Vec<String>, Vec<String>);

/// The lines of one node's waiting claims, by their filters.
#[derive(Default)]
pub struct ClaimLines {
    lines: Mutex<HashMap<Filters, Line>>,
}

impl ClaimLines {
    /// The line of claims that want `kinds` (any order) and bring
    /// `capabilities`. Lines nobody stands in are forgotten here.
    pub fn line(&self, kinds: &[String], capabilities: &[String]) -> Line {
        let normal = |names: &[String]| {
            let mut names = names.to_vec();
            names.sort();
            names.dedup();
            names
        };
        let key = (normal(kinds), normal(capabilities));
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.retain(|_, line| Arc::strong_count(line) > 1);
        lines.entry(key).or_default().clone()
    }

    /// How many lines have someone in them.
    #[cfg(test)]
    fn len(&self) -> usize {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.values().filter(|l| Arc::strong_count(l) > 1).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_filters_in_any_order_share_a_line_served_in_arrival_order() {
        let lines = Arc::new(ClaimLines::default());
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let first = lines.line(&s(&["b", "a"]), &s(&["gpu"]));
        let same = lines.line(&s(&["a", "b", "a"]), &s(&["gpu"]));
        assert!(Arc::ptr_eq(&first, &same));
        let other = lines.line(&s(&["a"]), &[]);
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(lines.len(), 2);
        // Served in arrival order: the head holds the line, the next two
        // queue behind it and get it in turn.
        let head = first.clone().lock_owned().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for n in 0..2 {
            let (line, order) = (first.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = line.lock().await;
                order.lock().unwrap_or_else(|p| p.into_inner()).push(n);
            }));
            tokio::task::yield_now().await;
        }
        drop(head);
        for w in waiters {
            let _ = w.await;
        }
        assert_eq!(*order.lock().unwrap_or_else(|p| p.into_inner()), [0, 1]);
        // Lines nobody stands in are forgotten.
        drop((first, same, other));
        let _again = lines.line(&s(&["c"]), &[]);
        assert_eq!(lines.len(), 1);
    }
}
