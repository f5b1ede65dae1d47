"""Why a call failed.

Every error is a :class:`SwarmError`. The subclasses keep what a caller can
act on (the item is not there, the token is stale, the request was malformed,
the credential is refused) apart from "no node could be reached"
(:class:`Unavailable`) and "nobody knows whether it happened"
(:class:`OutcomeUnknown`). An error a node answered with carries the node's
message and gRPC code.
"""

from __future__ import annotations

from typing import Optional

import grpc

__all__ = [
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


class SwarmError(Exception):
    """Base of every error this package raises for a call.

    ``message`` is the node's own text (or this client's, for errors found
    before a node answered); ``code`` is the gRPC status code when a node, or
    the transport, gave one.
    """

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None):
        super().__init__(message)
        self.message = message
        self.code = code


class NotFound(SwarmError):
    """The work item does not exist: it never did, or it finished and was
    removed after the cluster's retention period."""


class InvalidArgument(SwarmError):
    """The request broke a rule or a limit: a name with characters the
    cluster refuses, a payload that is not JSON or too large, a workflow spec
    that does not validate."""


class StaleToken(SwarmError):
    """The fencing token is not the item's current one: another agent holds
    the item now, or nobody does. Nothing was changed."""


class FailedPrecondition(SwarmError):
    """The item is in a state that does not allow the call (for example
    cancelling a completed item)."""


class AlreadyExists(SwarmError):
    """An id given to a new item is taken by another item."""


#: Another name for :class:`AlreadyExists`.
Conflict = AlreadyExists


class PermissionDenied(SwarmError):
    """The credential is valid but may not make this call (its role is too
    weak, or it is bound to another agent name)."""


class Unauthenticated(SwarmError):
    """The cluster wants a credential and got none, or one it does not know."""


class ResourceExhausted(SwarmError):
    """An answer would exceed a limit (message size, page size)."""


class Unavailable(SwarmError):
    """No node served the call: every attempt failed in a way that is safe to
    retry, until the retry budget ran out.

    ``attempts`` is how many attempts were made, ``endpoint`` the node the
    last one went to.
    """

    def __init__(self, message: str, code: Optional[grpc.StatusCode], attempts: int, endpoint: str):
        super().__init__(message, code)
        self.attempts = attempts
        self.endpoint = endpoint


class OutcomeUnknown(SwarmError):
    """A call that is not safe to repeat (claim, fail, release, hand-off, a
    submit without idempotency key) failed after the request may have reached
    a node. It may or may not have been applied: read the item back to find
    out. A claim that was applied grants items this client never heard of;
    they go back to the queue when their lease expires."""

    def __init__(self, message: str, code: Optional[grpc.StatusCode], endpoint: str):
        super().__init__(message, code)
        self.endpoint = endpoint


class WatchInterrupted(SwarmError):
    """A watch stream broke again and again without a new event, so the
    watch gave up."""


class WaitTimeout(SwarmError):
    """An item did not end within the time a caller said it would wait. The
    item is still running."""


def _message(error: grpc.RpcError) -> str:
    details = error.details() if hasattr(error, "details") else None
    if details:
        return str(details)
    code = error.code() if hasattr(error, "code") else None
    return _code_name(code)


def _code_name(code: Optional[grpc.StatusCode]) -> str:
    if code is None:
        return "unknown error"
    return code.name.lower().replace("_", " ")


def _mentions_stale(text: str) -> bool:
    return "stale" in text.lower()


def from_answer(error: grpc.RpcError, presents_token: bool) -> SwarmError:
    """The typed error for a status a node answered with (not a transport
    failure). ``presents_token``: the call carried a fencing token, which
    every such call checks before anything else, so a refused precondition
    there means the token is stale."""
    code = error.code()
    text = _message(error)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(text, code)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
        return InvalidArgument(text, code)
    if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED):
        if presents_token or _mentions_stale(text):
            # Scripts and people look for the word "stale".
            return StaleToken(text if _mentions_stale(text) else f"stale token: {text}", code)
        return FailedPrecondition(text, code)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return AlreadyExists(text, code)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(text, code)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(text, code)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhausted(text, code)
    return SwarmError(f"{_code_name(code)}: {text}" if error.details() else text, code)
