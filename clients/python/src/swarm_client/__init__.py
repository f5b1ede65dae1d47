"""Python client for Swarm, a Raft cluster that holds work items and the
claims on them (leases with fencing tokens).

Submit work, claim it as an agent whose tasks renew their leases in the
background, complete it, and watch it end::

    from swarm_client import Swarm

    swarm = Swarm("127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103")
    swarm.submit("summarize", {"url": "https://example.com"})
    agent = swarm.agent("worker-1", types=["summarize"], lease="30s")
    for task in agent.tasks():
        with task:
            task.progress("fetching")
            task.complete({"summary": "..."})

# Layout

- :mod:`swarm_client.client`: :class:`Swarm`, every call of the client API
  (submit, get, list, stats, cancel, watch, wait, workflow runs, and the
  token calls a holder makes).
- :mod:`swarm_client.agent`: :class:`Agent` (claims, long poll, the task
  loop) and :class:`Task` (lease renewal thread, ``lost``, complete / fail /
  release).
- :mod:`swarm_client.models`: the dataclasses answers come as
  (:class:`WorkItem`, :class:`WorkEvent`, :class:`Stats`, ...).
- :mod:`swarm_client.errors`: :class:`SwarmError` and its typed subclasses.
- :mod:`swarm_client.durations`: ``"30s"``, ``"500ms"``, ``"2m"`` or seconds.
- ``swarm_client._transport``: channels, leader following and the retry
  policy (which failures each call may be retried after).
- ``swarm_client._proto``: gRPC code generated from ``proto/swarm/v1`` by
  ``scripts/gen-python-proto.sh``; checked in, not edited.
"""

from . import errors
from .agent import Agent, Task
from .client import WORKFLOW_TYPE, Swarm
from .durations import seconds
from .errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    ResourceExhausted,
    StaleToken,
    SwarmError,
    Unauthenticated,
    Unavailable,
    WaitTimeout,
    WatchInterrupted,
)
from .models import (
    Claim,
    ClusterStatus,
    Holder,
    JournalEntry,
    Member,
    RawJson,
    Stats,
    StatusCounts,
    WorkEvent,
    WorkItem,
)

__version__ = "0.1.0"

__all__ = [
    "Swarm",
    "Agent",
    "Task",
    "WORKFLOW_TYPE",
    "RawJson",
    "WorkItem",
    "WorkEvent",
    "Claim",
    "Holder",
    "JournalEntry",
    "Stats",
    "StatusCounts",
    "ClusterStatus",
    "Member",
    "seconds",
    "errors",
    "SwarmError",
    "NotFound",
    "InvalidArgument",
    "StaleToken",
    "FailedPrecondition",
    "AlreadyExists",
    "Conflict",
    "PermissionDenied",
    "Unauthenticated",
    "ResourceExhausted",
    "Unavailable",
    "OutcomeUnknown",
    "WatchInterrupted",
    "WaitTimeout",
]
