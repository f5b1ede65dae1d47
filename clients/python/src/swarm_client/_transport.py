"""One lazily connected channel per node, and the loop that sends a call to
the node that answered last, follows leader hints and retries within the
retry policy, as the Rust client (crates/swarm-client) does.

Every failed attempt is first classified by what it says about the
request's fate: it never left this process, a node refused it without
acting on it, it may have been applied, or a node gave a definite answer.
Whether trying again is safe then depends on the call: repeating a claim
whose first attempt was applied would grant the agent items it never hears
of, and repeating a keyless submit would create a second item, so those are
retried only when the request certainly did not take effect.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import grpc

from . import errors
from ._proto import admin_pb2_grpc, work_pb2_grpc

log = logging.getLogger("swarm_client")

#: The largest message a node sends or takes (swarm_proto::MAX_MESSAGE_BYTES).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

#: The response metadata in which a node that did nothing names the leader
#: (empty when it knows none).
LEADER_ADDR_KEY = "swarm-leader-addr"


class Rpc(enum.Enum):
    """One RPC, as far as retrying goes: (method, service, repeatable,
    presents a fencing token). A repeatable call leaves the cluster as it
    would after one application when applied twice (or fails harmlessly, as
    a second complete with the same token does)."""

    SUBMIT_KEYED = ("Submit", "work", True, False)
    SUBMIT = ("Submit", "work", False, False)
    CLAIM = ("Claim", "work", False, False)
    RENEW = ("Renew", "work", True, False)
    COMPLETE = ("Complete", "work", True, True)
    FAIL = ("Fail", "work", False, True)
    RELEASE = ("Release", "work", False, True)
    HANDOFF = ("Handoff", "work", False, True)
    CANCEL = ("Cancel", "work", True, False)
    GET_WORK = ("GetWork", "work", True, False)
    LIST_WORK = ("ListWork", "work", True, False)
    WORK_STATS = ("WorkStats", "work", True, False)
    WATCH_WORK = ("WatchWork", "work", True, False)
    CLUSTER_STATUS = ("ClusterStatus", "admin", True, False)

    def __init__(self, method: str, service: str, repeatable: bool, presents_token: bool):
        self.method = method
        self.service = service
        self.repeatable = repeatable
        self.presents_token = presents_token


class Failure(enum.Enum):
    #: The request never left this process (no connection to the node).
    NOT_SENT = "not sent"
    #: A node declined without acting on it (UNAVAILABLE with the leader hint).
    REFUSED = "refused"
    #: It may have been applied: a deadline passed, the connection broke
    #: after sending, or a node answered UNAVAILABLE without saying it did
    #: nothing.
    AMBIGUOUS = "ambiguous"
    #: A node gave a definite answer; asking again cannot change it.
    ANSWERED = "answered"


def retries_after(rpc: Rpc, failure: Failure) -> bool:
    """Whether ``rpc`` may be tried again after an attempt failed this way."""
    if failure in (Failure.NOT_SENT, Failure.REFUSED):
        return True
    if failure is Failure.AMBIGUOUS:
        return rpc.repeatable
    return False


def _metadata_value(error: grpc.RpcError, key: str) -> Optional[str]:
    try:
        trailing = error.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - a transport error may carry none
        return None
    for k, v in trailing:
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None


def classify(error: grpc.RpcError) -> Tuple[Failure, Optional[str]]:
    """Sorts a failed attempt into a :class:`Failure`, with the leader a
    refusal named (``host:port``) if any."""
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = _metadata_value(error, LEADER_ADDR_KEY)
        if hint is not None:
            leader = None
            if hint.strip():
                try:
                    leader = parse_endpoint(hint)
                except ValueError:
                    leader = None
            return Failure.REFUSED, leader
        # grpc-core's own text when no connection could be made: the
        # request was never written.
        if "failed to connect to all addresses" in details:
            return Failure.NOT_SENT, None
        return Failure.AMBIGUOUS, None
    # A deadline that passed, here or on the node, says nothing about
    # whether the node got as far as proposing the request.
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return Failure.AMBIGUOUS, None
    # grpc-core's text for a stream the connection dropped under it.
    if code == grpc.StatusCode.UNKNOWN and "Stream removed" in details:
        return Failure.AMBIGUOUS, None
    return Failure.ANSWERED, None


def parse_endpoint(text: str) -> str:
    """``host:port`` from ``host:port``, ``http://host:port`` or
    ``https://host:port`` (whether to speak TLS is the client's setting)."""
    raw = text.strip()
    if not raw:
        raise ValueError("invalid endpoint '': empty address")
    rest = raw
    for scheme in ("http://", "https://"):
        if raw.startswith(scheme):
            rest = raw[len(scheme):]
            break
    else:
        if "://" in raw:
            raise ValueError(
                f"invalid endpoint {text!r}: unsupported scheme: use host:port, http://host:port or https://host:port"
            )
    if rest.endswith("/"):
        rest = rest[:-1]
    if "/" in rest or "@" in rest:
        raise ValueError(f"invalid endpoint {text!r}: a node address is host:port, with no path or user info")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or host in ("[", "[]"):
        raise ValueError(f"invalid endpoint {text!r}: not host:port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid endpoint {text!r}: port {port!r} is not a number from 1 to 65535")
    return f"{host}:{int(port)}"


def parse_endpoints(endpoints: Any) -> List[str]:
    """A list of ``host:port`` from a list or a comma-separated string,
    without duplicates, in the order given."""
    if isinstance(endpoints, str):
        given = [e for e in endpoints.split(",") if e.strip()]
    else:
        given = list(endpoints)
    order: List[str] = []
    for endpoint in given:
        addr = parse_endpoint(str(endpoint))
        if addr not in order:
            order.append(addr)
    if not order:
        raise ValueError("no endpoints given: pass host:port of at least one node")
    return order


@dataclass(frozen=True)
class Config:
    """Timeouts and retry policy, in seconds (the Rust client's defaults)."""

    #: Bound on connecting to one node, so that a node that is down or
    #: paused costs one attempt at most this long.
    connect_timeout: float = 1.0
    #: Bound on one attempt (one RPC to one node); also sent to the node.
    request_timeout: float = 5.0
    #: How many times a call may go through the whole endpoint list.
    rounds: int = 3
    #: The pause before the second round; each later pause doubles it.
    initial_backoff: float = 0.3
    #: The longest pause between two rounds.
    max_backoff: float = 2.0
    #: Bound on a whole call, every attempt and pause included.
    total_timeout: float = 10.0


class Cancelled(Exception):
    """A call was given up because its caller's cancel event was set."""


@dataclass
class Trace:
    """What happened on the way to a call's result."""

    #: Some attempt failed after the request may have been applied.
    ambiguous: bool = False


class _Node:
    """One node's channel, and what this process last learnt of its
    connectivity (kept by a subscription, so the common case, a connected
    node, costs nothing to check)."""

    def __init__(self, addr: str, credentials: Optional[grpc.ChannelCredentials]):
        self.addr = addr
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # A node that comes back is found within about a second; grpc's
            # defaults wait up to two minutes between connection attempts.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 1000),
            ("grpc.max_reconnect_backoff_ms", 2000),
            # Notices a dead peer under a long watch stream.
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
        ]
        if credentials is None:
            self.channel = grpc.insecure_channel(addr, options=options)
        else:
            self.channel = grpc.secure_channel(addr, credentials, options=options)
        self.work = work_pb2_grpc.WorkServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self._state: Optional[grpc.ChannelConnectivity] = None
        self._changed = threading.Condition()
        self.channel.subscribe(self._on_state, try_to_connect=False)

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()

    def connect(self, timeout: float) -> Optional[str]:
        """Waits up to ``timeout`` for a connection. ``None`` when a call may
        go out: connected, or failing to connect (the call then fails at
        once, unsent, naming the cause). Otherwise why not: still
        connecting (a paused node accepts TCP and never answers)."""
        ready = grpc.ChannelConnectivity.READY
        settled = (ready, grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN)
        with self._changed:
            if self._state == ready:
                return None

        def kick(_state: grpc.ChannelConnectivity) -> None:
            return None

        # A subscription that asks to connect starts connecting an idle channel.
        self.channel.subscribe(kick, try_to_connect=True)
        try:
            deadline = time.monotonic() + timeout
            with self._changed:
                while self._state not in settled:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return f"no connection to {self.addr} within {timeout:.1f}s"
                    self._changed.wait(remaining)
            return None
        finally:
            self.channel.unsubscribe(kick)

    def stub(self, service: str) -> Any:
        return self.work if service == "work" else self.admin

    def unsubscribe(self) -> None:
        try:
            self.channel.unsubscribe(self._on_state)
        except Exception:  # noqa: BLE001 - closing anyway
            pass

    def close(self) -> None:
        """Closes the channel once grpc's connectivity poller has noticed
        that nobody listens any more: it checks every 0.2s, and one that
        finds the channel closed under it fails in its own thread."""
        state = getattr(self.channel, "_connectivity_state", None)
        deadline = time.monotonic() + 1.0
        while getattr(state, "polling", False) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.channel.close()


def _jitter(pause: float) -> float:
    """Spreads retries of many clients apart: 80% to 120% of ``pause``."""
    return pause * random.uniform(0.8, 1.2)


class Transport:
    """The endpoints, their channels, and the retry loop. Thread-safe."""

    def __init__(
        self,
        endpoints: Sequence[str],
        config: Config,
        credentials: Optional[grpc.ChannelCredentials],
        token: Optional[str],
    ):
        self.config = config
        self._credentials = credentials
        self._metadata: Tuple[Tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._lock = threading.Lock()
        # The order in which a call goes through the cluster: the endpoints
        # given, then leaders learnt from hints.
        self._order: List[str] = list(endpoints)
        # Index in _order where the next call starts: the node that answered
        # last, so that a client that found the leader keeps talking to it.
        self._preferred = 0
        self._nodes: Dict[str, _Node] = {}
        self._closed = False

    # ----- endpoints -----

    def endpoints(self) -> List[str]:
        """The nodes a call goes through, starting with the one it tries first."""
        with self._lock:
            order = deque(self._order)
            order.rotate(-min(self._preferred, max(len(order) - 1, 0)))
            return list(order)

    def _remember(self, addr: str) -> None:
        with self._lock:
            if addr in self._order:
                self._preferred = self._order.index(addr)

    def _learn(self, addr: str) -> None:
        with self._lock:
            if addr not in self._order:
                self._order.append(addr)

    def node(self, addr: str) -> _Node:
        with self._lock:
            if self._closed:
                raise errors.SwarmError("the client is closed")
            node = self._nodes.get(addr)
            if node is None:
                node = _Node(addr, self._credentials)
                self._nodes[addr] = node
            return node

    def close(self) -> None:
        with self._lock:
            self._closed = True
            nodes = list(self._nodes.values())
            self._nodes.clear()
        for node in nodes:
            node.unsubscribe()
        for node in nodes:
            node.close()

    # ----- calls -----

    def call(
        self,
        rpc: Rpc,
        request: Any,
        *,
        wait: float = 0.0,
        total_timeout: Optional[float] = None,
        cancel: Optional[threading.Event] = None,
        trace: Optional[Trace] = None,
    ) -> Any:
        """Sends ``request`` to one node after another until one answers, a
        node gives a definite error, a failure is not safe to retry for
        ``rpc``, or the retry policy runs out. ``wait``: the node may hold
        the call that long before it answers (long poll), so every deadline
        is longer by that much. ``cancel``: set it to give the call up
        (raises :class:`Cancelled`)."""
        cfg = self.config
        trace = trace if trace is not None else Trace()
        budget = cfg.total_timeout if total_timeout is None else total_timeout
        deadline = time.monotonic() + budget + wait
        pause = cfg.initial_backoff
        attempts = 0
        with self._lock:
            # Bounds ping-pong between nodes that name each other as leader.
            hints_left = 2 * len(self._order) + 2
        last: Optional[Tuple[str, Optional[grpc.StatusCode], str]] = None

        for round_no in range(cfg.rounds):
            if round_no > 0:
                delay = _jitter(pause)
                pause = min(pause * 2, cfg.max_backoff)
                if time.monotonic() + delay >= deadline:
                    break
                if cancel is not None:
                    if cancel.wait(delay):
                        raise Cancelled()
                else:
                    time.sleep(delay)
            queue: Deque[str] = deque(self.endpoints())
            out_of_time = False
            while queue:
                addr = queue.popleft()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    out_of_time = True
                    break
                node = self.node(addr)
                attempts += 1
                unsent = node.connect(min(cfg.connect_timeout, remaining))
                error: Optional[grpc.RpcError] = None
                if unsent is not None:
                    failure, leader, code, text = Failure.NOT_SENT, None, grpc.StatusCode.UNAVAILABLE, unsent
                else:
                    timeout = max(min(cfg.request_timeout + wait, deadline - time.monotonic()), 0.001)
                    try:
                        response = self._invoke(node, rpc, request, timeout, cancel)
                        self._remember(addr)
                        return response
                    except grpc.RpcError as e:
                        error = e
                    failure, leader = classify(error)
                    code, text = error.code(), error.details() or ""
                log.debug(
                    "%s to %s failed (attempt %d, %s): %s: %s",
                    rpc.method, addr, attempts, failure.value, code, text,
                )
                if failure is Failure.ANSWERED:
                    assert error is not None
                    raise errors.from_answer(error, rpc.presents_token)
                if not retries_after(rpc, failure):
                    raise errors.OutcomeUnknown(
                        f"outcome unknown: the {rpc.method} request to {addr} failed after it was sent "
                        f"({text or code}); it may or may not have been applied",
                        code,
                        addr,
                    )
                if failure is Failure.AMBIGUOUS:
                    trace.ambiguous = True
                if failure is Failure.REFUSED and leader and leader != addr and hints_left > 0:
                    hints_left -= 1
                    self._learn(leader)
                    if leader in queue:
                        queue.remove(leader)
                    queue.appendleft(leader)
                last = (addr, code, text)
            if out_of_time:
                break
        if last is None:
            raise errors.Unavailable(
                "cluster unavailable: the retry budget ran out before any attempt", grpc.StatusCode.DEADLINE_EXCEEDED, 0, ""
            )
        addr, code, text = last
        raise errors.Unavailable(
            f"cluster unavailable: {attempts} attempt(s) failed, the last one at {addr}: {text or code}"
            + self._tls_hint(text),
            code,
            attempts,
            addr,
        )

    def _invoke(
        self, node: _Node, rpc: Rpc, request: Any, timeout: float, cancel: Optional[threading.Event]
    ) -> Any:
        method = getattr(node.stub(rpc.service), rpc.method)
        if cancel is None:
            return method(request, timeout=timeout, metadata=self._metadata)
        future = method.future(request, timeout=timeout, metadata=self._metadata)
        finished = threading.Event()
        future.add_done_callback(lambda _f: finished.set())
        while not finished.wait(0.1):
            if cancel.is_set():
                future.cancel()
                raise Cancelled()
        return future.result()

    def _tls_hint(self, text: str) -> str:
        """A connection that failed below gRPC may be TLS meeting plaintext."""
        lowered = text.lower()
        if "connection refused" in lowered or not any(
            s in lowered for s in ("ssl", "handshake", "socket closed", "connection reset", "end of file")
        ):
            return ""
        if self._credentials is None:
            return " (if the nodes serve TLS, give their CA certificate: ca=... or SWARM_CA)"
        return " (TLS is on: is the node serving plaintext, or is its certificate from another CA or for another host?)"

    def call_once(self, addr: str, rpc: Rpc, request: Any, timeout: float) -> Any:
        """Asks the node at ``addr`` itself, once: no retry, no redirect."""
        node = self.node(addr)
        unsent = node.connect(min(self.config.connect_timeout, timeout))
        if unsent is not None:
            raise errors.Unavailable(unsent, grpc.StatusCode.UNAVAILABLE, 1, addr)
        try:
            return self._invoke(node, rpc, request, timeout, None)
        except grpc.RpcError as e:
            failure, _ = classify(e)
            if failure is Failure.ANSWERED:
                raise errors.from_answer(e, rpc.presents_token) from None
            raise errors.Unavailable(
                f"{addr} did not answer: {e.details() or e.code()}", e.code(), 1, addr
            ) from None

    # ----- streams -----

    def stream(self, rpc: Rpc, request: Any, handle: Optional["StreamHandle"] = None) -> Iterator[Any]:
        """The messages of a server stream. Opening it goes round the
        endpoints like a read: a failure before the first message tries the
        next node. A failure after it raises :class:`StreamBroken`.
        ``handle``: lets another thread give the stream up (it then raises
        :class:`Cancelled`)."""
        cfg = self.config
        attempts = 0
        last: Optional[Tuple[str, Optional[grpc.StatusCode], str]] = None
        pause = cfg.initial_backoff
        # The budget counts from the first failure: waiting for a first
        # event (a live-only watch) is not a failure.
        deadline: Optional[float] = None
        for round_no in range(cfg.rounds):
            if round_no > 0:
                delay = _jitter(pause)
                pause = min(pause * 2, cfg.max_backoff)
                if deadline is not None and time.monotonic() + delay >= deadline:
                    break
                time.sleep(delay)
            for addr in self.endpoints():
                if handle is not None and handle.cancelled:
                    raise Cancelled()
                if deadline is not None and time.monotonic() >= deadline:
                    break
                node = self.node(addr)
                attempts += 1
                unsent = node.connect(cfg.connect_timeout)
                if unsent is not None:
                    last = (addr, grpc.StatusCode.UNAVAILABLE, unsent)
                    deadline = deadline or time.monotonic() + cfg.total_timeout
                    continue
                call = getattr(node.stub(rpc.service), rpc.method)(request, metadata=self._metadata)
                if handle is not None:
                    handle._attach(call)
                started = False
                try:
                    for message in call:
                        if not started:
                            started = True
                            self._remember(addr)
                        yield message
                    return
                except grpc.RpcError as e:
                    if handle is not None and handle.cancelled:
                        raise Cancelled() from None
                    failure, _ = classify(e)
                    if failure is Failure.ANSWERED:
                        raise errors.from_answer(e, rpc.presents_token) from None
                    if started:
                        raise StreamBroken(addr, e.code(), e.details() or "") from None
                    last = (addr, e.code(), e.details() or "")
                    deadline = deadline or time.monotonic() + cfg.total_timeout
                finally:
                    call.cancel()
        if last is None:
            raise errors.Unavailable("cluster unavailable: no attempt was made", None, attempts, "")
        addr, code, text = last
        raise errors.Unavailable(
            f"cluster unavailable: {attempts} attempt(s) to open the stream failed, the last one at {addr}: {text or code}",
            code,
            attempts,
            addr,
        )


class StreamBroken(Exception):
    """A stream that had started broke: the node went away or the
    connection dropped."""

    def __init__(self, endpoint: str, code: Optional[grpc.StatusCode], text: str):
        super().__init__(f"stream from {endpoint} broke: {text or code}")
        self.endpoint = endpoint
        self.code = code



class StreamHandle:
    """Gives a stream up from another thread: :meth:`cancel` ends the call
    it is reading, and the stream raises :class:`Cancelled`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._call: Any = None
        self.cancelled = False

    def _attach(self, call: Any) -> None:
        with self._lock:
            self._call = call
            if self.cancelled:
                call.cancel()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._call is not None:
                self._call.cancel()
