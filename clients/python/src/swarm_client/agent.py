""":class:`Agent` claims work; each claimed item is a :class:`Task` that
keeps its lease alive in a background thread until it is completed, failed
or released, and says when it has lost the item.

A task is lost when a renewal is refused (the lease expired, or another
agent holds the item under a newer token) or when the lease would expire
before a renewal could get through (the holder fences itself, with a
margin). Whatever the task then sends with its old token is refused with
:class:`~swarm_client.errors.StaleToken`: work done after ``lost`` is set
must not be published anywhere that does not check the token.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator, List, Optional, Union

from . import errors
from .durations import Duration, millis, seconds
from .models import WorkItem

if TYPE_CHECKING:
    from .client import Swarm

__all__ = ["Agent", "Task"]

log = logging.getLogger("swarm_client")

#: Errors after which retrying a renewal cannot help: the lease is gone.
_LEASE_GONE = (
    errors.StaleToken,
    errors.NotFound,
    errors.FailedPrecondition,
    errors.PermissionDenied,
    errors.Unauthenticated,
    errors.InvalidArgument,
)


class Agent:
    """Claims items for one agent name. Create it with :meth:`Swarm.agent`."""

    def __init__(
        self,
        swarm: "Swarm",
        name: str,
        types: Union[str, Iterable[str]] = (),
        capabilities: Union[str, Iterable[str]] = (),
        lease: Duration = "30s",
    ):
        self.swarm = swarm
        self.name = name
        self.types = [types] if isinstance(types, str) else list(types)
        self.capabilities = [capabilities] if isinstance(capabilities, str) else list(capabilities)
        self.lease = seconds(lease, "lease")
        if millis(self.lease) <= 0:
            raise ValueError("lease must be longer than 0ms")

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, types={self.types!r})"

    def claim(self, max: int = 1, wait: Duration = "20s", stop: Optional[threading.Event] = None) -> List["Task"]:
        """Claims up to ``max`` items, waiting up to ``wait`` for one to
        appear (long poll); an empty list when none did. Each task renews
        its lease from now on: use it as ``with task:`` so that it always
        ends."""
        items = self.swarm.claim(
            self.name,
            types=self.types,
            capabilities=self.capabilities,
            max=max,
            lease=self.lease,
            wait=wait,
            stop=stop,
        )
        return [Task(self, item) for item in items]

    def tasks(
        self,
        stop: Optional[threading.Event] = None,
        max_tasks: Optional[int] = None,
        wait: Duration = "20s",
        batch: int = 1,
    ) -> Iterator["Task"]:
        """Task after task, forever: long-poll claims of up to ``batch``
        items at a time, until ``stop`` is set or ``max_tasks`` were
        handed out.

        A cluster that cannot be reached is waited out (with backoff, a
        warning logged each time); errors that retrying cannot mend
        (permission, bad argument) are raised. Tasks claimed in a batch but
        not handed out when the loop ends are released.
        """
        handed = 0
        backoff = 0.5
        pending: List[Task] = []
        try:
            while (stop is None or not stop.is_set()) and (max_tasks is None or handed < max_tasks):
                want = batch if max_tasks is None else min(batch, max_tasks - handed)
                try:
                    pending = self.claim(max=want, wait=wait, stop=stop)
                except (errors.Unavailable, errors.OutcomeUnknown) as e:
                    log.warning("agent %s: claim failed, trying again in %.1fs: %s", self.name, backoff, e)
                    if stop is not None:
                        stop.wait(backoff)
                    else:
                        time.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                backoff = 0.5
                while pending:
                    task = pending.pop(0)
                    handed += 1
                    yield task
        finally:
            for task in pending:
                task._end_quietly("release")


class Task:
    """One claimed item, held under a fencing token, whose lease a
    background thread renews while the task is open.

    Use it as a context manager: leaving the block without
    :meth:`complete`, :meth:`fail` or :meth:`release` releases the item, or
    fails it (to be retried) when the block raised an exception.
    """

    def __init__(self, agent: Agent, item: WorkItem):
        self.agent = agent
        #: The item as the claim returned it.
        self.item = item
        self.id = item.id
        self.type = item.type
        #: The fencing token: every call for this task carries it, and
        #: systems the work touches can refuse an older one.
        self.token = item.claim.token if item.claim else item.token
        #: The item's payload, parsed from JSON.
        self.payload = item.payload
        #: Which claim of the item this is, from 1 (a release does not count).
        self.attempt = item.attempt
        #: The lease in seconds, as granted.
        self.lease = item.claim.lease_ms / 1000.0 if item.claim else agent.lease
        #: Set when the task no longer holds its item; ``lost_reason`` says why.
        self.lost = threading.Event()
        self.lost_reason: Optional[str] = None
        self._lock = threading.Lock()
        self._progress: Optional[str] = None
        #: How the task ended ("completed", "failed", "released"), once it did.
        self.outcome: Optional[str] = None
        # The lease's end by this process's clock, as of the last renewal
        # the cluster granted: counted from when that request was sent,
        # which is no later than the leader's stamp.
        self._expires = time.monotonic() + self.lease
        self._stop = threading.Event()
        self._renewer: Optional[threading.Thread] = None
        self._start_renewing()

    def __repr__(self) -> str:
        state = self.outcome or ("lost" if self.lost.is_set() else "held")
        return f"Task({self.id!r}, token={self.token}, {state})"

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if self.outcome is None:
            # An interrupt or exit is not the item's fault: give it back.
            if exc is not None and isinstance(exc, Exception):
                self._end_quietly("fail", f"{exc_type.__name__}: {exc}")
            else:
                self._end_quietly("release")
        self._stop.set()
        return False

    # ----- what a holder does -----

    def progress(self, text: str) -> None:
        """A progress note for the item, sent with the next renewal (the
        latest note wins)."""
        with self._lock:
            self._progress = text

    def complete(self, result: Any = None) -> WorkItem:
        """Completes the item with ``result`` (encoded as JSON). Raises
        :class:`~swarm_client.errors.StaleToken` if the task lost the item;
        ``lost`` is then set too."""
        return self._end("completed", lambda: self.agent.swarm.complete(self.id, self.token, result))

    def fail(self, error: str, retry: bool = True) -> WorkItem:
        """Fails the item: with ``retry`` it goes back to the queue (bounded
        by its max attempts), otherwise it fails for good."""
        return self._end("failed", lambda: self.agent.swarm.fail(self.id, self.token, error, retry))

    def release(self) -> WorkItem:
        """Gives the item back, claimable again, without counting an attempt
        against it."""
        return self._end("released", lambda: self.agent.swarm.release(self.id, self.token))

    @property
    def finished(self) -> bool:
        """Whether the task has completed, failed or released its item."""
        return self.outcome is not None

    # ----- ending -----

    def _end(self, outcome: str, send: Any) -> WorkItem:
        with self._lock:
            if self.outcome is not None:
                raise errors.SwarmError(f"task {self.id!r} (token {self.token}) has {self.outcome} already")
        # The renewer stops first: a renewal that crossed the final call
        # would be refused and read as a lost lease.
        self._stop_renewing()
        try:
            item = send()
        except _LEASE_GONE as e:
            self._mark_lost(str(e))
            raise
        except errors.SwarmError:
            # Not applied, or perhaps not: keep the lease alive meanwhile.
            # If it was applied, the next renewal is refused and says so.
            if not self.lost.is_set():
                self._start_renewing()
            raise
        with self._lock:
            self.outcome = outcome
        return item

    def _end_quietly(self, action: str, error: str = "") -> None:
        try:
            if action == "fail":
                self.fail(error, retry=True)
            else:
                self.release()
        except errors.SwarmError as e:
            level = logging.DEBUG if self.lost.is_set() else logging.WARNING
            log.log(level, "task %s: could not %s it on leaving its block: %s", self.id, action, e)
        finally:
            self._stop_renewing()

    def _mark_lost(self, reason: str) -> None:
        with self._lock:
            if self.lost_reason is None:
                self.lost_reason = reason
        self.lost.set()
        self._stop.set()

    # ----- the renewer -----

    def _start_renewing(self) -> None:
        self._stop = threading.Event()
        self._renewer = threading.Thread(
            target=self._renew_loop, args=(self._stop,), name=f"swarm-renew-{self.id}", daemon=True
        )
        self._renewer.start()

    def _stop_renewing(self) -> None:
        self._stop.set()
        renewer = self._renewer
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(timeout=self.agent.swarm._transport.config.total_timeout + 1)

    def _renew_loop(self, stop: threading.Event) -> None:
        swarm = self.agent.swarm
        interval = max(self.lease / 3.0, 0.05)
        # Stop believing in the lease this long before it would expire.
        margin = min(max(self.lease / 10.0, 0.05), 2.0)
        next_at = time.monotonic() + interval
        # Wakes for the next renewal, or when the lease is about to run out
        # with no renewal through, whichever comes first.
        while not stop.wait(max(min(next_at, self._expires - margin) - time.monotonic(), 0.0)):
            sent = time.monotonic()
            budget = self._expires - margin - sent
            if budget <= 0:
                self._lost_by_renewer(stop, f"lease of {self.lease:g}s expired before it could be renewed")
                return
            with self._lock:
                progress = self._progress
            try:
                renewed, rejected = swarm.renew(
                    self.agent.name, tokens=[self.token], progress=progress, total_timeout=budget
                )
            except _LEASE_GONE as e:
                self._lost_by_renewer(stop, f"renewal refused: {e}")
                return
            except errors.SwarmError as e:
                log.warning("task %s: renewal failed, trying again: %s", self.id, e)
                next_at = time.monotonic() + min(interval / 2.0, 1.0)
                continue
            if self.token in rejected:
                self._lost_by_renewer(stop, f"renewal refused: {rejected[self.token]}")
                return
            mine = [i for i in renewed if i.claim is not None and i.claim.token == self.token]
            if not mine:
                self._lost_by_renewer(stop, "renewal did not renew this task's token")
                return
            self._expires = sent + mine[0].claim.lease_ms / 1000.0  # type: ignore[union-attr]
            with self._lock:
                if self._progress == progress:
                    self._progress = None
            next_at = sent + interval

    def _lost_by_renewer(self, stop: threading.Event, reason: str) -> None:
        # A renewal refused because the task just ended is not a loss.
        if stop.is_set():
            return
        log.warning("task %s (token %d) lost its item: %s", self.id, self.token, reason)
        self._mark_lost(reason)
