from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORK_STATUS_UNSPECIFIED: _ClassVar[WorkStatus]
    WORK_STATUS_PENDING: _ClassVar[WorkStatus]
    WORK_STATUS_CLAIMED: _ClassVar[WorkStatus]
    WORK_STATUS_COMPLETED: _ClassVar[WorkStatus]
    WORK_STATUS_FAILED: _ClassVar[WorkStatus]
    WORK_STATUS_CANCELLED: _ClassVar[WorkStatus]

class ReadConsistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READ_CONSISTENCY_LINEARIZABLE: _ClassVar[ReadConsistency]
    READ_CONSISTENCY_LOCAL: _ClassVar[ReadConsistency]
WORK_STATUS_UNSPECIFIED: WorkStatus
WORK_STATUS_PENDING: WorkStatus
WORK_STATUS_CLAIMED: WorkStatus
WORK_STATUS_COMPLETED: WorkStatus
WORK_STATUS_FAILED: WorkStatus
WORK_STATUS_CANCELLED: WorkStatus
READ_CONSISTENCY_LINEARIZABLE: ReadConsistency
READ_CONSISTENCY_LOCAL: ReadConsistency

class Claim(_message.Message):
    __slots__ = ("agent", "token", "lease_expires_at_ms", "lease_ms", "granted_at_ms", "progress")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    agent: str
    token: int
    lease_expires_at_ms: int
    lease_ms: int
    granted_at_ms: int
    progress: str
    def __init__(self, agent: _Optional[str] = ..., token: _Optional[int] = ..., lease_expires_at_ms: _Optional[int] = ..., lease_ms: _Optional[int] = ..., granted_at_ms: _Optional[int] = ..., progress: _Optional[str] = ...) -> None: ...

class HolderRecord(_message.Message):
    __slots__ = ("agent", "token", "granted_at_ms", "ended")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    agent: str
    token: int
    granted_at_ms: int
    ended: str
    def __init__(self, agent: _Optional[str] = ..., token: _Optional[int] = ..., granted_at_ms: _Optional[int] = ..., ended: _Optional[str] = ...) -> None: ...

class JournalEntry(_message.Message):
    __slots__ = ("step", "token", "outcome_json")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_JSON_FIELD_NUMBER: _ClassVar[int]
    step: str
    token: int
    outcome_json: str
    def __init__(self, step: _Optional[str] = ..., token: _Optional[int] = ..., outcome_json: _Optional[str] = ...) -> None: ...

class WorkItem(_message.Message):
    __slots__ = ("id", "type", "priority", "requires", "payload_json", "status", "attempt", "max_attempts", "claim", "token", "result_json", "error", "idempotency_key", "submitted_at_ms", "updated_at_ms", "history", "journal", "events", "cancel_requested")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    priority: int
    requires: _containers.RepeatedScalarFieldContainer[str]
    payload_json: str
    status: WorkStatus
    attempt: int
    max_attempts: int
    claim: Claim
    token: int
    result_json: str
    error: str
    idempotency_key: str
    submitted_at_ms: int
    updated_at_ms: int
    history: _containers.RepeatedCompositeFieldContainer[HolderRecord]
    journal: _containers.RepeatedCompositeFieldContainer[JournalEntry]
    events: _containers.RepeatedCompositeFieldContainer[WorkEvent]
    cancel_requested: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., priority: _Optional[int] = ..., requires: _Optional[_Iterable[str]] = ..., payload_json: _Optional[str] = ..., status: _Optional[_Union[WorkStatus, str]] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., claim: _Optional[_Union[Claim, _Mapping]] = ..., token: _Optional[int] = ..., result_json: _Optional[str] = ..., error: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., submitted_at_ms: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., history: _Optional[_Iterable[_Union[HolderRecord, _Mapping]]] = ..., journal: _Optional[_Iterable[_Union[JournalEntry, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[WorkEvent, _Mapping]]] = ..., cancel_requested: _Optional[str] = ...) -> None: ...

class WorkEvent(_message.Message):
    __slots__ = ("seq", "at_ms", "kind", "agent", "token", "step", "detail", "outcome_json", "status")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at_ms: int
    kind: str
    agent: str
    token: int
    step: str
    detail: str
    outcome_json: str
    status: WorkStatus
    def __init__(self, seq: _Optional[int] = ..., at_ms: _Optional[int] = ..., kind: _Optional[str] = ..., agent: _Optional[str] = ..., token: _Optional[int] = ..., step: _Optional[str] = ..., detail: _Optional[str] = ..., outcome_json: _Optional[str] = ..., status: _Optional[_Union[WorkStatus, str]] = ...) -> None: ...

class WatchWorkRequest(_message.Message):
    __slots__ = ("id", "from_start")
    ID_FIELD_NUMBER: _ClassVar[int]
    FROM_START_FIELD_NUMBER: _ClassVar[int]
    id: str
    from_start: bool
    def __init__(self, id: _Optional[str] = ..., from_start: _Optional[bool] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("type", "priority", "requires", "payload_json", "idempotency_key", "max_attempts")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    type: str
    priority: int
    requires: _containers.RepeatedScalarFieldContainer[str]
    payload_json: str
    idempotency_key: str
    max_attempts: int
    def __init__(self, type: _Optional[str] = ..., priority: _Optional[int] = ..., requires: _Optional[_Iterable[str]] = ..., payload_json: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., max_attempts: _Optional[int] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("item", "created")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    item: WorkItem
    created: bool
    def __init__(self, item: _Optional[_Union[WorkItem, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ClaimRequest(_message.Message):
    __slots__ = ("agent", "types", "capabilities", "max", "lease_ms", "wait_ms")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    agent: str
    types: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    max: int
    lease_ms: int
    wait_ms: int
    def __init__(self, agent: _Optional[str] = ..., types: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., max: _Optional[int] = ..., lease_ms: _Optional[int] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class ClaimResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[WorkItem]
    def __init__(self, items: _Optional[_Iterable[_Union[WorkItem, _Mapping]]] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("agent", "tokens", "progress")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    agent: str
    tokens: _containers.RepeatedScalarFieldContainer[int]
    progress: str
    def __init__(self, agent: _Optional[str] = ..., tokens: _Optional[_Iterable[int]] = ..., progress: _Optional[str] = ...) -> None: ...

class RenewFailure(_message.Message):
    __slots__ = ("token", "error")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    token: int
    error: str
    def __init__(self, token: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class RenewResponse(_message.Message):
    __slots__ = ("renewed", "rejected")
    RENEWED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    renewed: _containers.RepeatedCompositeFieldContainer[WorkItem]
    rejected: _containers.RepeatedCompositeFieldContainer[RenewFailure]
    def __init__(self, renewed: _Optional[_Iterable[_Union[WorkItem, _Mapping]]] = ..., rejected: _Optional[_Iterable[_Union[RenewFailure, _Mapping]]] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("id", "token", "result_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: int
    result_json: str
    def __init__(self, id: _Optional[str] = ..., token: _Optional[int] = ..., result_json: _Optional[str] = ...) -> None: ...

class FailRequest(_message.Message):
    __slots__ = ("id", "token", "error", "retry")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: int
    error: str
    retry: bool
    def __init__(self, id: _Optional[str] = ..., token: _Optional[int] = ..., error: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("id", "token")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: int
    def __init__(self, id: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class HandoffRequest(_message.Message):
    __slots__ = ("id", "token", "to_agent")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TO_AGENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    token: int
    to_agent: str
    def __init__(self, id: _Optional[str] = ..., token: _Optional[int] = ..., to_agent: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetWorkRequest(_message.Message):
    __slots__ = ("id", "consistency")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    id: str
    consistency: ReadConsistency
    def __init__(self, id: _Optional[str] = ..., consistency: _Optional[_Union[ReadConsistency, str]] = ...) -> None: ...

class WorkResponse(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: WorkItem
    def __init__(self, item: _Optional[_Union[WorkItem, _Mapping]] = ...) -> None: ...

class ListWorkRequest(_message.Message):
    __slots__ = ("status", "type", "holder", "limit", "consistency", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: WorkStatus
    type: str
    holder: str
    limit: int
    consistency: ReadConsistency
    page_token: str
    def __init__(self, status: _Optional[_Union[WorkStatus, str]] = ..., type: _Optional[str] = ..., holder: _Optional[str] = ..., limit: _Optional[int] = ..., consistency: _Optional[_Union[ReadConsistency, str]] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[WorkItem]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[WorkItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WorkStatsRequest(_message.Message):
    __slots__ = ("consistency",)
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    consistency: ReadConsistency
    def __init__(self, consistency: _Optional[_Union[ReadConsistency, str]] = ...) -> None: ...

class StatusCounts(_message.Message):
    __slots__ = ("pending", "claimed", "completed", "failed", "cancelled")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    pending: int
    claimed: int
    completed: int
    failed: int
    cancelled: int
    def __init__(self, pending: _Optional[int] = ..., claimed: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ...) -> None: ...

class WorkStatsResponse(_message.Message):
    __slots__ = ("by_status", "by_type", "oldest_pending_age_ms", "oldest_pending_id", "total", "oldest_pending_age_ms_by_type")
    class ByTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StatusCounts
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StatusCounts, _Mapping]] = ...) -> None: ...
    class OldestPendingAgeMsByTypeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_MS_BY_TYPE_FIELD_NUMBER: _ClassVar[int]
    by_status: StatusCounts
    by_type: _containers.MessageMap[str, StatusCounts]
    oldest_pending_age_ms: int
    oldest_pending_id: str
    total: int
    oldest_pending_age_ms_by_type: _containers.ScalarMap[str, int]
    def __init__(self, by_status: _Optional[_Union[StatusCounts, _Mapping]] = ..., by_type: _Optional[_Mapping[str, StatusCounts]] = ..., oldest_pending_age_ms: _Optional[int] = ..., oldest_pending_id: _Optional[str] = ..., total: _Optional[int] = ..., oldest_pending_age_ms_by_type: _Optional[_Mapping[str, int]] = ...) -> None: ...
