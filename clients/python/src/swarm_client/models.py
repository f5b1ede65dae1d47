"""What the cluster answers with, as plain dataclasses: work items, their
events, counts and cluster status. Statuses and roles are lower-case strings
(``"pending"``, ``"claimed"``, ``"completed"``, ``"failed"``,
``"cancelled"``); payloads, results and step outcomes are parsed from their
JSON text. Generated protobuf types stay inside this module and
:mod:`swarm_client._transport`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ._proto import admin_pb2, work_pb2

__all__ = [
    "TERMINAL_STATUSES",
    "Claim",
    "Holder",
    "JournalEntry",
    "WorkEvent",
    "WorkItem",
    "StatusCounts",
    "Stats",
    "Member",
    "ClusterStatus",
    "RawJson",
]

#: The statuses an item never leaves.
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})

#: The event kinds that end an item's event stream.
FINAL_EVENT_KINDS = frozenset({"completed", "failed", "cancelled"})

_STATUS_NAMES = {
    work_pb2.WORK_STATUS_UNSPECIFIED: "unspecified",
    work_pb2.WORK_STATUS_PENDING: "pending",
    work_pb2.WORK_STATUS_CLAIMED: "claimed",
    work_pb2.WORK_STATUS_COMPLETED: "completed",
    work_pb2.WORK_STATUS_FAILED: "failed",
    work_pb2.WORK_STATUS_CANCELLED: "cancelled",
}
_STATUS_VALUES = {name: value for value, name in _STATUS_NAMES.items() if name != "unspecified"}

_ROLE_NAMES = {
    admin_pb2.MEMBER_ROLE_UNSPECIFIED: "unspecified",
    admin_pb2.MEMBER_ROLE_LEADER: "leader",
    admin_pb2.MEMBER_ROLE_FOLLOWER: "follower",
    admin_pb2.MEMBER_ROLE_LEARNER: "learner",
}


class RawJson:
    """JSON text to send as it is, for a payload or result that is JSON
    already: ``swarm.submit("t", RawJson('{"a": 1}'))``. Any other value is
    encoded with :func:`json.dumps`."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"RawJson({self.text!r})"


def json_text(value: Any, what: str) -> str:
    """The JSON text the API carries for ``value``."""
    if isinstance(value, RawJson):
        return value.text
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        from .errors import InvalidArgument

        raise InvalidArgument(f"{what} cannot be encoded as JSON: {e}") from e


def parse_json(text: Optional[str]) -> Any:
    """The value of JSON text from a node; empty text is ``None``. Text that
    does not parse (a node never sends any) is returned as it is."""
    if text is None or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def status_name(value: int) -> str:
    return _STATUS_NAMES.get(value, "unspecified")


def status_value(name: Optional[str]) -> int:
    """The protobuf status for a lower-case name; ``None`` is any status."""
    if name is None:
        return work_pb2.WORK_STATUS_UNSPECIFIED
    try:
        return _STATUS_VALUES[name.lower()]
    except KeyError:
        from .errors import InvalidArgument

        known = ", ".join(sorted(_STATUS_VALUES))
        raise InvalidArgument(f"unknown status {name!r}: use one of {known}") from None


@dataclass(frozen=True)
class Claim:
    """The live claim on an item: who holds it, under which token, until when."""

    agent: str
    token: int
    #: Unix epoch milliseconds, as stamped by the leader.
    lease_expires_at_ms: int
    lease_ms: int
    granted_at_ms: int
    #: The holder's last progress note, if it sent one.
    progress: Optional[str]


@dataclass(frozen=True)
class Holder:
    """One claim an item had, live or ended."""

    agent: str
    token: int
    granted_at_ms: int
    #: How the claim ended ("completed", "failed", "released", "expired",
    #: "handed_off", "cancelled"); ``None`` while it is live.
    ended: Optional[str]


@dataclass(frozen=True)
class JournalEntry:
    """A checkpointed workflow step."""

    step: str
    token: int
    outcome: Any


@dataclass(frozen=True)
class WorkEvent:
    """One thing that happened to a work item."""

    #: Position in the item's history, from 0.
    seq: int
    at_ms: int
    #: "submitted", "claimed", "step", "handed_off", "released", "expired",
    #: "retrying", "cancel_requested", "completed", "failed", "cancelled".
    kind: str
    agent: Optional[str]
    token: Optional[int]
    step: Optional[str]
    detail: Optional[str]
    #: For "step" events: the checkpointed outcome.
    outcome: Any
    #: The item's status when the event was sent.
    status: str

    @property
    def is_final(self) -> bool:
        """Whether this event ends the item (completed, failed, cancelled)."""
        return self.kind in FINAL_EVENT_KINDS


@dataclass(frozen=True)
class WorkItem:
    """A work item as a node answered it."""

    id: str
    type: str
    status: str
    priority: int
    requires: Tuple[str, ...]
    payload: Any
    attempt: int
    max_attempts: int
    #: The most recent fencing token granted for the item (0 = never claimed).
    token: int
    claim: Optional[Claim]
    #: Set when completed.
    result: Any
    error: Optional[str]
    idempotency_key: Optional[str]
    submitted_at_ms: int
    updated_at_ms: int
    history: Tuple[Holder, ...] = ()
    journal: Tuple[JournalEntry, ...] = ()
    events: Tuple[WorkEvent, ...] = ()
    #: Set when a cancel asked the holder to undo a running workflow first.
    cancel_requested: Optional[str] = None
    #: Only on an item :meth:`Swarm.submit` returns: ``False`` when the
    #: idempotency key matched an item submitted before. ``None`` elsewhere.
    created: Optional[bool] = field(default=None, compare=False)

    @property
    def done(self) -> bool:
        """Whether the item has ended (completed, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES

    @property
    def holder(self) -> Optional[str]:
        """The agent that holds the item now, if any."""
        return self.claim.agent if self.claim else None


@dataclass(frozen=True)
class StatusCounts:
    pending: int = 0
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.claimed + self.completed + self.failed + self.cancelled


@dataclass(frozen=True)
class Stats:
    """How many items there are, by status and by type."""

    by_status: StatusCounts
    by_type: Dict[str, StatusCounts]
    total: int
    #: Seconds since the oldest pending item was submitted; ``None`` when
    #: nothing is pending.
    oldest_pending_age: Optional[float]
    oldest_pending_id: Optional[str]
    #: Per type with pending items, the age in seconds of its oldest.
    oldest_pending_age_by_type: Dict[str, float]


@dataclass(frozen=True)
class Member:
    id: int
    addr: str
    #: "leader", "follower" or "learner".
    role: str
    reachable: bool
    last_applied: int
    lag: Optional[int]
    peer_addr: str


@dataclass(frozen=True)
class ClusterStatus:
    """Membership, leader and indexes, as the answering node sees them."""

    #: 0 = no known leader.
    leader_id: int
    term: int
    commit_index: int
    last_applied: int
    #: The node that answered.
    node_id: int
    members: Tuple[Member, ...]
    live_claims: int
    items: int
    items_removed: int

    @property
    def voters(self) -> List[Member]:
        return [m for m in self.members if m.role in ("leader", "follower")]


def _opt(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def _text_or_none(text: str) -> Optional[str]:
    return text or None


def event_from_pb(e: Any) -> WorkEvent:
    return WorkEvent(
        seq=e.seq,
        at_ms=e.at_ms,
        kind=e.kind,
        agent=_text_or_none(e.agent),
        token=e.token or None,
        step=_text_or_none(e.step),
        detail=_text_or_none(e.detail),
        outcome=parse_json(e.outcome_json),
        status=status_name(e.status),
    )


def item_from_pb(i: Any, created: Optional[bool] = None) -> WorkItem:
    claim = None
    if i.HasField("claim"):
        c = i.claim
        claim = Claim(
            agent=c.agent,
            token=c.token,
            lease_expires_at_ms=c.lease_expires_at_ms,
            lease_ms=c.lease_ms,
            granted_at_ms=c.granted_at_ms,
            progress=_opt(c, "progress"),
        )
    return WorkItem(
        id=i.id,
        type=i.type,
        status=status_name(i.status),
        priority=i.priority,
        requires=tuple(i.requires),
        payload=parse_json(i.payload_json),
        attempt=i.attempt,
        max_attempts=i.max_attempts,
        token=i.token,
        claim=claim,
        result=parse_json(_opt(i, "result_json")),
        error=_opt(i, "error") or None,
        idempotency_key=_text_or_none(i.idempotency_key),
        submitted_at_ms=i.submitted_at_ms,
        updated_at_ms=i.updated_at_ms,
        history=tuple(
            Holder(agent=h.agent, token=h.token, granted_at_ms=h.granted_at_ms, ended=_text_or_none(h.ended))
            for h in i.history
        ),
        journal=tuple(JournalEntry(step=j.step, token=j.token, outcome=parse_json(j.outcome_json)) for j in i.journal),
        events=tuple(event_from_pb(e) for e in i.events),
        cancel_requested=_opt(i, "cancel_requested"),
        created=created,
    )


def _counts(c: Any) -> StatusCounts:
    return StatusCounts(
        pending=c.pending, claimed=c.claimed, completed=c.completed, failed=c.failed, cancelled=c.cancelled
    )


def stats_from_pb(s: Any) -> Stats:
    age = _opt(s, "oldest_pending_age_ms")
    return Stats(
        by_status=_counts(s.by_status),
        by_type={kind: _counts(c) for kind, c in sorted(s.by_type.items())},
        total=s.total,
        oldest_pending_age=None if age is None else age / 1000.0,
        oldest_pending_id=_text_or_none(s.oldest_pending_id),
        oldest_pending_age_by_type={kind: ms / 1000.0 for kind, ms in sorted(s.oldest_pending_age_ms_by_type.items())},
    )


def cluster_status_from_pb(s: Any) -> ClusterStatus:
    return ClusterStatus(
        leader_id=s.leader_id,
        term=s.term,
        commit_index=s.commit_index,
        last_applied=s.last_applied,
        node_id=s.node_id,
        members=tuple(
            Member(
                id=m.id,
                addr=m.addr,
                role=_ROLE_NAMES.get(m.role, "unspecified"),
                reachable=m.reachable,
                last_applied=m.last_applied,
                lag=_opt(m, "lag"),
                peer_addr=m.peer_addr,
            )
            for m in s.members
        ),
        live_claims=s.live_claims,
        items=s.items,
        items_removed=s.items_removed,
    )
