//! Reads that must fit one gRPC message: `ListWork` pages (their opaque
//! page token, their size limits, where a page stops) and the size check
//! for a single item or event.
//!
//! A page lists items in id order from just after the token's id: the
//! state's item map is keyed by id, so a page starts with a range lookup
//! and never walks the items before it. A page stops at the first of: the
//! requested number of items, the message limit, [`SCAN_BUDGET`] items
//! looked at (a filter that matches little must not hold the replica's
//! read lock for a walk of every item), or the last item.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message;
use swarm_claims::{APPLY_LIMITS, State, Status as WorkStatus, WorkItem};
use swarm_proto::v1 as pb;
use swarm_proto::{LIST_DEFAULT_LIMIT, LIST_MAX_LIMIT};

use crate::convert::{item_to_pb, status_from_pb};

/// Items one page looks at, matching its filters or not, before it stops.
pub const SCAN_BUDGET: usize = 100_000;

/// Room kept in a page for its `next_page_token` and framing: a token is at
/// most a few hundred bytes (an id is at most 256).
const TOKEN_ROOM: usize = 1024;

/// The first byte of every page token, so that its format can change.
const TOKEN_VERSION: u8 = 1;

/// Why a read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("invalid status: unknown value {0}")]
    UnknownStatus(i32),
    #[error(
        "invalid page_token: not one this cluster issued (pass the previous answer's next_page_token unchanged)"
    )]
    BadPageToken,
    #[error("invalid limit: {limit} is over the maximum of {max}")]
    LimitTooLarge { limit: u32, max: u32 },
    /// One item (or one of its events) does not fit a message on its own.
    #[error("work item {id:?} encodes to {bytes} bytes, over the {limit}-byte message limit")]
    TooLarge {
        id: String,
        bytes: usize,
        limit: usize,
    },
    /// As `TooLarge`, for an item a listing reached: `skip` lists on past it.
    #[error(
        "work item {id:?} encodes to {bytes} bytes, over the {limit}-byte message limit; list past it with page_token {skip}"
    )]
    PageItemTooLarge {
        id: String,
        bytes: usize,
        limit: usize,
        skip: String,
    },
}

/// The opaque `page_token` of a listing: the id of the last item a page
/// looked at, versioned and base64url-encoded. A position, not a snapshot:
/// items submitted after it are listed if their id sorts after it.
pub fn encode_page_token(last_id: &str) -> String {
    let mut bytes = Vec::with_capacity(1 + last_id.len());
    bytes.push(TOKEN_VERSION);
    bytes.extend_from_slice(last_id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The id a page token continues after; `None` for the empty token.
pub fn decode_page_token(token: &str) -> Result<Option<String>, ReadError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ReadError::BadPageToken)?;
    match bytes.split_first() {
        Some((&TOKEN_VERSION, id)) if !id.is_empty() && id.len() <= APPLY_LIMITS.max_name_len => {
            String::from_utf8(id.to_vec())
                .map(Some)
                .map_err(|_| ReadError::BadPageToken)
        }
        _ => Err(ReadError::BadPageToken),
    }
}

/// A `ListWork` request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub status: Option<WorkStatus>,
    /// Empty = any type.
    pub kind: String,
    /// Empty = any holder (or none).
    pub holder: String,
    /// The id the page starts after.
    pub after: Option<String>,
    /// Only dead letters.
    pub dead_letter: bool,
    pub limit: usize,
}

impl ListQuery {
    pub fn from_pb(r: &pb::ListWorkRequest) -> Result<ListQuery, ReadError> {
        let status =
            pb::WorkStatus::try_from(r.status).map_err(|_| ReadError::UnknownStatus(r.status))?;
        let limit = match r.limit {
            0 => LIST_DEFAULT_LIMIT,
            n if n > LIST_MAX_LIMIT => {
                return Err(ReadError::LimitTooLarge {
                    limit: n,
                    max: LIST_MAX_LIMIT,
                });
            }
            n => n,
        };
        Ok(ListQuery {
            status: status_from_pb(status),
            kind: r.r#type.clone(),
            holder: r.holder.clone(),
            after: decode_page_token(&r.page_token)?,
            dead_letter: r.dead_letter,
            limit: limit as usize,
        })
    }

    /// Whether `item` passes the status, type and holder filters.
    pub fn matches(&self, item: &WorkItem) -> bool {
        self.status.is_none_or(|s| item.status == s)
            && (!self.dead_letter || item.dead_letter())
            && (self.kind.is_empty() || *item.kind == *self.kind)
            && (self.holder.is_empty()
                || item
                    .lease
                    .as_ref()
                    .is_some_and(|l| *l.agent == *self.holder))
    }
}

/// One page of `query` from `state`, its encoding at most `max_bytes`.
pub fn list_page(
    state: &State,
    query: &ListQuery,
    max_bytes: usize,
) -> Result<pb::ListWorkResponse, ReadError> {
    let budget = max_bytes.saturating_sub(TOKEN_ROOM);
    let mut items = Vec::new();
    let mut used = 0;
    let mut scanned = 0;
    let mut last = query.after.as_deref();
    let mut rest = state.items_after(query.after.as_deref()).peekable();
    while let Some(&item) = rest.peek() {
        if items.len() >= query.limit || scanned >= SCAN_BUDGET {
            break;
        }
        if query.matches(item) {
            let entry = item_to_pb(item);
            let bytes = framed_len(&entry);
            if bytes > budget && items.is_empty() {
                return Err(ReadError::PageItemTooLarge {
                    id: item.id.to_string(),
                    bytes,
                    limit: max_bytes,
                    skip: encode_page_token(&item.id),
                });
            }
            if used + bytes > budget {
                break;
            }
            used += bytes;
            items.push(entry);
        }
        scanned += 1;
        last = Some(&item.id);
        rest.next();
    }
    let next_page_token = match (rest.peek(), last) {
        (Some(_), Some(last)) => encode_page_token(last),
        _ => String::new(),
    };
    Ok(pb::ListWorkResponse {
        items,
        next_page_token,
    })
}

/// Refuses a message about item `id` that would not fit `max_bytes`.
pub fn check_fits(id: &str, message: &impl Message, max_bytes: usize) -> Result<(), ReadError> {
    let bytes = message.encoded_len();
    if bytes > max_bytes {
        return Err(ReadError::TooLarge {
            id: id.to_string(),
            bytes,
            limit: max_bytes,
        });
    }
    Ok(())
}

/// What a repeated message field adds to its parent: tag, length, body.
fn framed_len(item: &pb::WorkItem) -> usize {
    let len = item.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use swarm_claims::command::{Claim, Submit};
    use swarm_claims::{Command, apply};

    use super::*;

    fn state_with(n: usize, payload_bytes: usize) -> State {
        let mut state = State::new();
        let payload = format!("\"{}\"", "x".repeat(payload_bytes));
        for i in 0..n {
            let kind = if i % 3 == 0 { "odd" } else { "build" };
            let cmd = Command::Submit(Submit {
                id: format!("w{i:03}"),
                idempotency_key: String::new(),
                kind: kind.into(),
                priority: 0,
                requires: vec![],
                payload: payload.clone(),
                max_attempts: 0,
                now: 1_000,
            });
            apply(&mut state, cmd).unwrap();
        }
        state
    }

    fn query(limit: u32) -> ListQuery {
        ListQuery::from_pb(&pb::ListWorkRequest {
            limit,
            ..Default::default()
        })
        .unwrap()
    }

    /// Every page of `query` from the start, following the tokens.
    fn all_pages(state: &State, mut query: ListQuery, max_bytes: usize) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        loop {
            let page = list_page(state, &query, max_bytes).unwrap();
            pages.push(page.items.iter().map(|i| i.id.clone()).collect());
            if page.next_page_token.is_empty() {
                return pages;
            }
            query.after = decode_page_token(&page.next_page_token).unwrap();
        }
    }

    #[test]
    fn a_token_round_trips_and_junk_is_refused() {
        let token = encode_page_token("0b7e-äö");
        assert_eq!(
            decode_page_token(&token).unwrap().as_deref(),
            Some("0b7e-äö")
        );
        assert_eq!(decode_page_token("").unwrap(), None);
        let too_long = encode_page_token(&"x".repeat(APPLY_LIMITS.max_name_len + 1));
        let wrong_version = URL_SAFE_NO_PAD.encode([2u8, b'w']);
        let not_utf8 = URL_SAFE_NO_PAD.encode([1u8, 0xff, 0xfe]);
        let only_version = URL_SAFE_NO_PAD.encode([1u8]);
        for bad in [
            "not base64!",
            "w1",
            &too_long,
            &wrong_version,
            &not_utf8,
            &only_version,
        ] {
            assert_eq!(
                decode_page_token(bad),
                Err(ReadError::BadPageToken),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_default_and_are_bounded() {
        assert_eq!(query(0).limit, LIST_DEFAULT_LIMIT as usize);
        assert_eq!(query(LIST_MAX_LIMIT).limit, LIST_MAX_LIMIT as usize);
        let err = ListQuery::from_pb(&pb::ListWorkRequest {
            limit: LIST_MAX_LIMIT + 1,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid limit: 10001 is over the maximum of 10000"
        );
        let err = ListQuery::from_pb(&pb::ListWorkRequest {
            status: 42,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err, ReadError::UnknownStatus(42));
    }

    #[test]
    fn pages_list_every_item_once_in_id_order() {
        let state = state_with(50, 10);
        let pages = all_pages(&state, query(7), usize::MAX);
        assert_eq!(pages.len(), 8);
        assert!(pages[..7].iter().all(|p| p.len() == 7), "{pages:?}");
        let ids: Vec<String> = pages.concat();
        let expected: Vec<String> = state.items().map(|i| i.id.to_string()).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn filters_hold_across_pages_and_the_last_page_has_no_token() {
        let mut state = state_with(20, 10);
        let claim = Command::Claim(Claim {
            agent: "a1".into(),
            kinds: vec!["build".into()],
            capabilities: vec![],
            max: 4,
            lease_ms: 10_000,
            now: 1_000,
        });
        apply(&mut state, claim).unwrap();
        let odd = ListQuery {
            kind: "odd".into(),
            ..query(3)
        };
        let ids = all_pages(&state, odd, usize::MAX).concat();
        let expected: Vec<String> = (0..20)
            .filter(|i| i % 3 == 0)
            .map(|i| format!("w{i:03}"))
            .collect();
        assert_eq!(ids, expected);

        let held = ListQuery {
            holder: "a1".into(),
            status: Some(WorkStatus::Claimed),
            ..query(0)
        };
        let page = list_page(&state, &held, usize::MAX).unwrap();
        assert_eq!(page.items.len(), 4);
        assert_eq!(page.next_page_token, "");
    }

    #[test]
    fn a_page_stops_before_the_message_limit() {
        let state = state_with(10, 1_000);
        let one = framed_len(&item_to_pb(state.items().next().unwrap()));
        // Room for three items and the token, not four.
        let max_bytes = TOKEN_ROOM + 3 * one + one / 2;
        let pages = all_pages(&state, query(0), max_bytes);
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
        assert_eq!(pages.concat().len(), 10);
    }

    #[test]
    fn an_item_over_the_limit_alone_is_an_error_naming_it_and_the_limit() {
        let state = state_with(3, 1_000);
        let max_bytes = TOKEN_ROOM + 500;
        let err = list_page(&state, &query(0), max_bytes).unwrap_err();
        let ReadError::PageItemTooLarge {
            id, limit, skip, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!((id.as_str(), *limit), ("w000", max_bytes));
        assert_eq!(decode_page_token(skip).unwrap().as_deref(), Some("w000"));
        assert!(err.to_string().contains("message limit"), "{err}");
        assert!(
            err.to_string().contains(&format!("{max_bytes}-byte")),
            "{err}"
        );
    }

    #[test]
    fn a_page_that_found_nothing_within_the_scan_budget_still_moves_on() {
        let mut state = State::new();
        for i in 0..SCAN_BUDGET + 2 {
            let cmd = Command::Submit(Submit {
                id: format!("w{i:07}"),
                idempotency_key: String::new(),
                kind: if i == SCAN_BUDGET + 1 {
                    "rare"
                } else {
                    "common"
                }
                .into(),
                priority: 0,
                requires: vec![],
                payload: "1".into(),
                max_attempts: 0,
                now: 1_000,
            });
            apply(&mut state, cmd).unwrap();
        }
        let rare = ListQuery {
            kind: "rare".into(),
            ..query(0)
        };
        let first = list_page(&state, &rare, usize::MAX).unwrap();
        assert!(first.items.is_empty());
        assert!(!first.next_page_token.is_empty());
        let pages = all_pages(&state, rare, usize::MAX);
        assert_eq!(pages.concat(), [format!("w{:07}", SCAN_BUDGET + 1)]);
    }

    #[test]
    fn check_fits_names_the_item_and_the_limit() {
        let item = pb::WorkItem {
            id: "w1".into(),
            payload_json: "x".repeat(100),
            ..Default::default()
        };
        assert!(check_fits("w1", &item, 1_000).is_ok());
        assert_eq!(
            check_fits("w1", &item, 50).unwrap_err().to_string(),
            format!(
                "work item \"w1\" encodes to {} bytes, over the 50-byte message limit",
                item.encoded_len()
            )
        );
    }
}
