""":class:`Swarm`: the calls of the cluster's WorkService (and the status
call of its AdminService), with typed answers and errors, leader following
and retries. Agents and their tasks are in :mod:`swarm_client.agent`."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import grpc

from . import errors
from ._proto import admin_pb2, work_pb2
from ._transport import Cancelled, Config, Rpc, StreamBroken, StreamHandle, Trace, Transport, parse_endpoints
from .durations import Duration, millis, seconds
from .models import (
    ClusterStatus,
    RawJson,
    Stats,
    WorkEvent,
    WorkItem,
    cluster_status_from_pb,
    event_from_pb,
    item_from_pb,
    json_text,
    stats_from_pb,
    status_value,
)

if TYPE_CHECKING:
    from .agent import Agent

__all__ = ["Swarm", "WORKFLOW_TYPE"]

#: The type of a work item that is a workflow run (swarm_claims::WORKFLOW_KIND).
WORKFLOW_TYPE = "workflow"

#: Pause before watching again after a stream broke, so that a cluster
#: electing a new leader is not hammered.
_REOPEN_PAUSE = 0.3
#: How many times in a row a watch may be reopened without a new event.
_MAX_QUIET_REOPENS = 10
#: A claim answered sooner than this did not wait: the node does not hold
#: claims (an older node), so the client waits between polls itself.
_NO_LONG_POLL = 0.2


def _names(value: Union[None, str, Iterable[str]], what: str) -> List[str]:
    """A list of names; one string is one name, not its characters."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    names = list(value)
    for name in names:
        if not isinstance(name, str):
            raise errors.InvalidArgument(f"{what} must be strings, got {name!r}")
    return names


def _consistency(local: bool) -> int:
    return work_pb2.READ_CONSISTENCY_LOCAL if local else work_pb2.READ_CONSISTENCY_LINEARIZABLE


class Swarm:
    """A client for a Swarm cluster.

    ``endpoints``: the nodes' client addresses, a list or a comma-separated
    string of ``host:port`` (any node serves any call; writes are forwarded
    to the leader, and the client follows leader hints). ``token``: a bearer
    token for a cluster with a tokens file. ``ca``: the path of the CA
    certificate (PEM) of a cluster that serves TLS; ``cert`` and ``key``: a
    client certificate and its key, for a cluster that maps certificates to
    roles.

    Nothing is connected until the first call. A client is safe to share
    between threads; close it (or use it as a context manager) to close its
    channels.
    """

    def __init__(
        self,
        endpoints: Union[str, Sequence[str], None] = None,
        token: Optional[str] = None,
        ca: Union[str, "os.PathLike[str]", None] = None,
        *,
        cert: Union[str, "os.PathLike[str]", None] = None,
        key: Union[str, "os.PathLike[str]", None] = None,
        connect_timeout: Duration = "1s",
        request_timeout: Duration = "5s",
        total_timeout: Duration = "10s",
        retry_rounds: int = 3,
    ):
        if endpoints is None:
            endpoints = os.environ.get("SWARM_ENDPOINTS")
            if not endpoints:
                raise ValueError("no endpoints given: pass host:port of the nodes, or set SWARM_ENDPOINTS")
        order = parse_endpoints(endpoints)
        if token is not None and (not token or not all(33 <= ord(c) <= 126 for c in token)):
            raise ValueError("token must be printable ASCII without spaces")
        if retry_rounds < 1:
            raise ValueError(f"retry_rounds must be at least 1, got {retry_rounds}")
        config = Config(
            connect_timeout=seconds(connect_timeout, "connect_timeout"),
            request_timeout=seconds(request_timeout, "request_timeout"),
            total_timeout=seconds(total_timeout, "total_timeout"),
            rounds=retry_rounds,
        )
        for name in ("connect_timeout", "request_timeout", "total_timeout"):
            if getattr(config, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs both cert and key")
        credentials = None
        if ca is not None or cert is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_pem(ca, "CA certificate"),
                private_key=_read_pem(key, "client key"),
                certificate_chain=_read_pem(cert, "client certificate"),
            )
        self._transport = Transport(order, config, credentials, token)

    @classmethod
    def from_env(cls, **kwargs: Any) -> "Swarm":
        """A client configured like swarmctl: ``SWARM_ENDPOINTS``,
        ``SWARM_TOKEN``, ``SWARM_CA``, ``SWARM_CERT`` and ``SWARM_KEY``."""
        env = os.environ
        kwargs.setdefault("token", env.get("SWARM_TOKEN") or None)
        kwargs.setdefault("ca", env.get("SWARM_CA") or None)
        kwargs.setdefault("cert", env.get("SWARM_CERT") or None)
        kwargs.setdefault("key", env.get("SWARM_KEY") or None)
        return cls(env.get("SWARM_ENDPOINTS"), **kwargs)

    def __enter__(self) -> "Swarm":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Closes every channel. Calls made after it fail."""
        self._transport.close()

    @property
    def endpoints(self) -> List[str]:
        """The nodes a call goes through, starting with the one it tries first."""
        return self._transport.endpoints()

    def __repr__(self) -> str:
        return f"Swarm({','.join(self.endpoints)!r})"

    # ----- submitting and reading -----

    def submit(
        self,
        type: str,
        payload: Any = None,
        priority: int = 0,
        requires: Union[str, Iterable[str]] = (),
        key: Optional[str] = None,
        max_attempts: int = 0,
    ) -> WorkItem:
        """Submits a work item of ``type`` whose payload is ``payload``
        encoded as JSON (:class:`RawJson` for text that is JSON already).

        Higher ``priority`` is claimed first; only agents with every
        capability in ``requires`` may claim it; ``max_attempts`` bounds the
        claims it may have (0: the cluster's default).

        With an idempotency ``key``, submitting again returns the same item
        (``item.created`` is then ``False``), so the call is retried after
        any failure. Without one it is retried only when the request
        certainly reached no node, and may raise :class:`OutcomeUnknown`.
        """
        request = work_pb2.SubmitRequest(
            type=type,
            priority=priority,
            requires=_names(requires, "requires"),
            payload_json=json_text(payload, "payload"),
            idempotency_key=key or "",
            max_attempts=max_attempts,
        )
        rpc = Rpc.SUBMIT_KEYED if key else Rpc.SUBMIT
        response = self._transport.call(rpc, request)
        return item_from_pb(response.item, created=response.created)

    def get(self, id: str, local: bool = False) -> WorkItem:
        """Reads one item. ``local``: the answering node's own replica,
        possibly behind the leader (default: linearizable)."""
        response = self._transport.call(Rpc.GET_WORK, work_pb2.GetWorkRequest(id=id, consistency=_consistency(local)))
        return item_from_pb(response.item)

    def list(
        self,
        status: Optional[str] = None,
        type: Optional[str] = None,
        holder: Optional[str] = None,
        page_size: int = 0,
        local: bool = False,
    ) -> Iterator[WorkItem]:
        """Every item matching the filters, in id order, fetching page after
        page as the iteration needs them (``page_size``: items per page, 0 =
        the node's default of 1,000). ``status`` is a lower-case status name."""
        request = work_pb2.ListWorkRequest(
            status=status_value(status),
            type=type or "",
            holder=holder or "",
            limit=page_size,
            consistency=_consistency(local),
        )
        while True:
            page = self._transport.call(Rpc.LIST_WORK, request)
            for item in page.items:
                yield item_from_pb(item)
            if not page.next_page_token:
                return
            if page.next_page_token == request.page_token:
                raise errors.SwarmError("malformed response: list work answered with the page token it was given")
            request.page_token = page.next_page_token

    def stats(self, local: bool = False) -> Stats:
        """How many items there are, by status and by type, and how long the
        oldest pending one has waited."""
        return stats_from_pb(self._transport.call(Rpc.WORK_STATS, work_pb2.WorkStatsRequest(consistency=_consistency(local))))

    def cancel(self, id: str, reason: str = "") -> WorkItem:
        """Cancels the item, whoever holds it. A workflow run that a node is
        running is first asked to undo its steps: the answer then has
        ``cancel_requested`` set, and the run ends cancelled once its holder
        has undone them. Cancelling a cancelled item succeeds; cancelling a
        completed or failed one raises :class:`FailedPrecondition`."""
        response = self._transport.call(Rpc.CANCEL, work_pb2.CancelRequest(id=id, reason=reason))
        return item_from_pb(response.item)

    def watch(self, id: str, from_start: bool = True) -> Iterator[WorkEvent]:
        """The item's events, in order, until its final one (completed,
        failed or cancelled): every event since it was submitted when
        ``from_start``, else only those from now on.

        When the node streaming them goes away, the watch opens again on
        another node, from the start, and skips the events already seen.
        """
        return self._watch(id, from_start, None)

    def _watch(self, id: str, from_start: bool, handle: Optional[StreamHandle]) -> Iterator[WorkEvent]:
        next_seq: Optional[int] = None
        quiet_reopens = 0
        while True:
            request = work_pb2.WatchWorkRequest(id=id, from_start=from_start or next_seq is not None)
            progressed = False
            try:
                for message in self._transport.stream(Rpc.WATCH_WORK, request, handle):
                    if next_seq is not None and message.seq < next_seq:
                        continue
                    next_seq = message.seq + 1
                    progressed = True
                    event = event_from_pb(message)
                    yield event
                    if event.is_final:
                        return
                # A node ends the stream when the item has ended; a
                # live-only watch of an item that ended sees no event.
                if self.get(id).done:
                    return
                why = "the node ended the watch before the item ended"
            except StreamBroken as e:
                why = str(e)
            quiet_reopens = 1 if progressed else quiet_reopens + 1
            if quiet_reopens > _MAX_QUIET_REOPENS:
                raise errors.WatchInterrupted(
                    f"watch of work item {id!r} gave up: {why} ({_MAX_QUIET_REOPENS} times without a new event)"
                )
            time.sleep(_REOPEN_PAUSE)

    def wait(self, id: str, timeout: Optional[Duration] = None) -> WorkItem:
        """Follows the item until it ends and returns it as it ended (check
        ``status``: a failed or cancelled item is returned, not raised).
        Raises :class:`WaitTimeout` when it has not ended within ``timeout``."""
        handle = StreamHandle()
        limit = None if timeout is None else seconds(timeout, "timeout")
        timer = None
        if limit is not None:
            timer = threading.Timer(limit, handle.cancel)
            timer.daemon = True
            timer.start()
        try:
            for event in self._watch(id, True, handle):
                if event.is_final:
                    break
        except Cancelled:
            raise errors.WaitTimeout(
                f"work item {id!r} did not end within {limit:g}s: it is still running"
            ) from None
        finally:
            if timer is not None:
                timer.cancel()
        return self.get(id)

    # ----- workflows -----

    def run_workflow(
        self,
        spec: Union[str, "os.PathLike[str]", Mapping[str, Any]],
        inputs: Optional[Mapping[str, Any]] = None,
        wait: bool = False,
        timeout: Optional[Duration] = None,
        priority: int = 0,
        requires: Union[str, Iterable[str]] = (),
        key: Optional[str] = None,
    ) -> WorkItem:
        """Submits a workflow run, as ``swarmctl workflow run`` does: a work
        item of type ``workflow`` that a node claims and runs.

        ``spec`` is the path of a YAML or JSON spec file (its directory is
        where the node resolves the spec's relative paths), spec text (a
        string with a newline), or the spec as a dict. ``inputs`` are the
        run's inputs. The node validates both and refuses a bad spec with
        :class:`InvalidArgument`.

        ``wait``: follow the run until it ends (at most ``timeout``) and
        return the item as it ended; otherwise return the submitted item.
        """
        base_dir: Optional[str] = None
        if isinstance(spec, Mapping):
            text = json.dumps(spec)
        elif isinstance(spec, (str, os.PathLike)):
            path_or_text = os.fspath(spec)
            if "\n" in path_or_text:
                text = path_or_text
            else:
                try:
                    with open(path_or_text, encoding="utf-8") as f:
                        text = f.read()
                except OSError as e:
                    raise errors.InvalidArgument(f"read workflow spec {path_or_text}: {e.strerror or e}") from e
                base_dir = os.path.dirname(os.path.abspath(path_or_text))
        else:
            raise errors.InvalidArgument(
                f"a workflow spec is a file path, YAML or JSON text, or a dict; got {type(spec).__name__}"
            )
        payload: Dict[str, Any] = {"spec": text, "inputs": dict(inputs or {})}
        if base_dir is not None:
            payload["base_dir"] = base_dir
        item = self.submit(WORKFLOW_TYPE, RawJson(json_text(payload, "workflow inputs")), priority, requires, key)
        if not wait:
            return item
        return self.wait(item.id, timeout)

    # ----- cluster -----

    def cluster_status(self, endpoint: Optional[str] = None, timeout: Duration = "1s") -> ClusterStatus:
        """Membership, leader, term and indexes, as a node sees them. With
        ``endpoint``: asks that node itself, once, within ``timeout`` (no
        retry, no redirect), and raises :class:`Unavailable` if it does not
        answer."""
        request = admin_pb2.ClusterStatusRequest()
        if endpoint is None:
            return cluster_status_from_pb(self._transport.call(Rpc.CLUSTER_STATUS, request))
        addr = parse_endpoints([endpoint])[0]
        return cluster_status_from_pb(self._transport.call_once(addr, Rpc.CLUSTER_STATUS, request, seconds(timeout, "timeout")))

    # ----- agents: the calls a holder makes with its token -----

    def agent(
        self,
        name: str,
        types: Union[str, Iterable[str]] = (),
        capabilities: Union[str, Iterable[str]] = (),
        lease: Duration = "30s",
    ) -> "Agent":
        """An agent named ``name`` that claims items of ``types`` (any type
        when empty) whose requirements its ``capabilities`` meet, each under
        a ``lease`` its tasks renew while they are open."""
        from .agent import Agent

        return Agent(self, name, types=types, capabilities=capabilities, lease=lease)

    def claim(
        self,
        agent: str,
        types: Union[str, Iterable[str]] = (),
        capabilities: Union[str, Iterable[str]] = (),
        max: int = 1,
        lease: Optional[Duration] = None,
        wait: Duration = 0,
        stop: Optional[threading.Event] = None,
    ) -> List[WorkItem]:
        """Claims up to ``max`` items for ``agent``; an empty list when none
        matched within ``wait``. Each item's ``claim.token`` is the fencing
        token its holder acts with. Most callers want :meth:`agent`, whose
        tasks renew their leases.

        ``wait`` is a long poll: the node holds the call until matching work
        appears (up to its own cap), and the client asks again until
        ``wait`` has passed. Setting ``stop`` gives the wait up (an item
        granted at that very moment goes back to the queue when its lease
        expires). A claim is not retried after a failure that may have been
        applied: that raises :class:`OutcomeUnknown`.
        """
        request = work_pb2.ClaimRequest(
            agent=agent,
            types=_names(types, "types"),
            capabilities=_names(capabilities, "capabilities"),
            max=max,
            lease_ms=0 if lease is None else millis(lease, "lease"),
        )
        wait_s = seconds(wait, "wait")
        deadline = time.monotonic() + wait_s
        while True:
            remaining = deadline - time.monotonic()
            request.wait_ms = int(remaining * 1000) if remaining > 0 else 0
            asked = time.monotonic()
            try:
                response = self._transport.call(Rpc.CLAIM, request, wait=request.wait_ms / 1000.0, cancel=stop)
            except Cancelled:
                return []
            if response.items:
                return [item_from_pb(i) for i in response.items]
            now = time.monotonic()
            if now >= deadline or request.wait_ms == 0:
                return []
            if now - asked < _NO_LONG_POLL:
                pause = min(_NO_LONG_POLL, deadline - now)
                if stop is not None:
                    if stop.wait(pause):
                        return []
                else:
                    time.sleep(pause)
            if stop is not None and stop.is_set():
                return []

    def renew(
        self,
        agent: str,
        tokens: Iterable[int] = (),
        progress: Optional[str] = None,
        total_timeout: Optional[Duration] = None,
    ) -> Tuple[List[WorkItem], Dict[int, str]]:
        """Renews ``agent``'s leases under ``tokens`` (every lease it holds
        when empty), recording ``progress`` on each. Returns the renewed
        items and, by token, why each other one was not renewed."""
        request = work_pb2.RenewRequest(agent=agent, tokens=list(tokens))
        if progress is not None:
            request.progress = progress
        response = self._transport.call(
            Rpc.RENEW,
            request,
            total_timeout=None if total_timeout is None else seconds(total_timeout, "total_timeout"),
        )
        renewed = [item_from_pb(i) for i in response.renewed]
        rejected = {r.token: r.error for r in response.rejected}
        return renewed, rejected

    def complete(self, id: str, token: int, result: Any = None) -> WorkItem:
        """Completes the item held under ``token`` with ``result`` (encoded
        as JSON). Raises :class:`StaleToken` when the token is not the
        item's current one.

        If an attempt failed ambiguously and a retry is refused as stale,
        the item is read back: completed under this very token (the first
        attempt was applied after all) is a success.
        """
        request = work_pb2.CompleteRequest(id=id, token=token, result_json=json_text(result, "result"))
        trace = Trace()
        try:
            response = self._transport.call(Rpc.COMPLETE, request, trace=trace)
        except errors.StaleToken:
            if not trace.ambiguous:
                raise
            try:
                item = self.get(id)
            except errors.SwarmError:
                item = None
            if item is not None and _completed_under(item, token):
                return item
            raise
        return item_from_pb(response.item)

    def fail(self, id: str, token: int, error: str, retry: bool = True) -> WorkItem:
        """Fails the item held under ``token``. ``retry``: it goes back to
        pending (bounded by its max attempts); otherwise it fails for good.
        Not retried after a failure that may have been applied."""
        response = self._transport.call(Rpc.FAIL, work_pb2.FailRequest(id=id, token=token, error=error, retry=retry))
        return item_from_pb(response.item)

    def release(self, id: str, token: int) -> WorkItem:
        """Gives the item held under ``token`` back, claimable again."""
        response = self._transport.call(Rpc.RELEASE, work_pb2.ReleaseRequest(id=id, token=token))
        return item_from_pb(response.item)

    def handoff(self, id: str, token: int, to_agent: str) -> WorkItem:
        """Moves the claim held under ``token`` to ``to_agent``, with a new token."""
        response = self._transport.call(Rpc.HANDOFF, work_pb2.HandoffRequest(id=id, token=token, to_agent=to_agent))
        return item_from_pb(response.item)


def _completed_under(item: WorkItem, token: int) -> bool:
    return item.status == "completed" and any(h.token == token and h.ended == "completed" for h in item.history)


def _read_pem(path: Union[str, "os.PathLike[str]", None], what: str) -> Optional[bytes]:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"read {what} {os.fspath(path)}: {e.strerror or e}") from e

