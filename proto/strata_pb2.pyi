from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Access(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_UNSPECIFIED: _ClassVar[Access]
    ACCESS_COMPUTE: _ClassVar[Access]
    ACCESS_TENANT: _ClassVar[Access]
    ACCESS_TENANTLESS: _ClassVar[Access]
    ACCESS_ADMIN_ONLY: _ClassVar[Access]

class FileKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_KIND_UNSPECIFIED: _ClassVar[FileKind]
    FILE_KIND_FILE: _ClassVar[FileKind]
    FILE_KIND_DIR: _ClassVar[FileKind]
ACCESS_UNSPECIFIED: Access
ACCESS_COMPUTE: Access
ACCESS_TENANT: Access
ACCESS_TENANTLESS: Access
ACCESS_ADMIN_ONLY: Access
FILE_KIND_UNSPECIFIED: FileKind
FILE_KIND_FILE: FileKind
FILE_KIND_DIR: FileKind
ACCESS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor
READ_FIELD_NUMBER: _ClassVar[int]
read: _descriptor.FieldDescriptor
BRANCH_REF_FIELD_NUMBER: _ClassVar[int]
branch_ref: _descriptor.FieldDescriptor

class Relation(_message.Message):
    __slots__ = ("spc_oid", "db_oid", "rel_number", "fork")
    SPC_OID_FIELD_NUMBER: _ClassVar[int]
    DB_OID_FIELD_NUMBER: _ClassVar[int]
    REL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    FORK_FIELD_NUMBER: _ClassVar[int]
    spc_oid: int
    db_oid: int
    rel_number: int
    fork: int
    def __init__(self, spc_oid: _Optional[int] = ..., db_oid: _Optional[int] = ..., rel_number: _Optional[int] = ..., fork: _Optional[int] = ...) -> None: ...

class ReadPoint(_message.Message):
    __slots__ = ("tenant", "branch", "lsn", "latest")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    branch: str
    lsn: int
    latest: bool
    def __init__(self, tenant: _Optional[str] = ..., branch: _Optional[str] = ..., lsn: _Optional[int] = ..., latest: _Optional[bool] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class FileInfo(_message.Message):
    __slots__ = ("path", "kind", "size", "mode", "relation", "block_offset", "mtime_us")
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    BLOCK_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MTIME_US_FIELD_NUMBER: _ClassVar[int]
    path: str
    kind: FileKind
    size: int
    mode: int
    relation: Relation
    block_offset: int
    mtime_us: int
    def __init__(self, path: _Optional[str] = ..., kind: _Optional[_Union[FileKind, str]] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ..., relation: _Optional[_Union[Relation, _Mapping]] = ..., block_offset: _Optional[int] = ..., mtime_us: _Optional[int] = ...) -> None: ...

class GetPagesRequest(_message.Message):
    __slots__ = ("request_id", "at", "relation", "blocks")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    at: ReadPoint
    relation: Relation
    blocks: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, request_id: _Optional[int] = ..., at: _Optional[_Union[ReadPoint, _Mapping]] = ..., relation: _Optional[_Union[Relation, _Mapping]] = ..., blocks: _Optional[_Iterable[int]] = ...) -> None: ...

class GetPagesResponse(_message.Message):
    __slots__ = ("request_id", "status", "lsn", "pages")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    status: Status
    lsn: int
    pages: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, request_id: _Optional[int] = ..., status: _Optional[_Union[Status, _Mapping]] = ..., lsn: _Optional[int] = ..., pages: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListFilesRequest(_message.Message):
    __slots__ = ("at", "prefix")
    AT_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    at: ReadPoint
    prefix: str
    def __init__(self, at: _Optional[_Union[ReadPoint, _Mapping]] = ..., prefix: _Optional[str] = ...) -> None: ...

class ListFilesResponse(_message.Message):
    __slots__ = ("lsn", "files")
    LSN_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    lsn: int
    files: _containers.RepeatedCompositeFieldContainer[FileInfo]
    def __init__(self, lsn: _Optional[int] = ..., files: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ...) -> None: ...

class StatRequest(_message.Message):
    __slots__ = ("at", "path")
    AT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    at: ReadPoint
    path: str
    def __init__(self, at: _Optional[_Union[ReadPoint, _Mapping]] = ..., path: _Optional[str] = ...) -> None: ...

class StatResponse(_message.Message):
    __slots__ = ("lsn", "file")
    LSN_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    lsn: int
    file: FileInfo
    def __init__(self, lsn: _Optional[int] = ..., file: _Optional[_Union[FileInfo, _Mapping]] = ...) -> None: ...

class RelationSizeRequest(_message.Message):
    __slots__ = ("at", "relation")
    AT_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    at: ReadPoint
    relation: Relation
    def __init__(self, at: _Optional[_Union[ReadPoint, _Mapping]] = ..., relation: _Optional[_Union[Relation, _Mapping]] = ...) -> None: ...

class RelationSizeResponse(_message.Message):
    __slots__ = ("lsn", "blocks")
    LSN_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    lsn: int
    blocks: int
    def __init__(self, lsn: _Optional[int] = ..., blocks: _Optional[int] = ...) -> None: ...

class FileOp(_message.Message):
    __slots__ = ("write", "truncate", "create", "unlink", "rename", "mkdir", "rmdir", "chmod")
    WRITE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    UNLINK_FIELD_NUMBER: _ClassVar[int]
    RENAME_FIELD_NUMBER: _ClassVar[int]
    MKDIR_FIELD_NUMBER: _ClassVar[int]
    RMDIR_FIELD_NUMBER: _ClassVar[int]
    CHMOD_FIELD_NUMBER: _ClassVar[int]
    write: WriteOp
    truncate: TruncateOp
    create: CreateOp
    unlink: UnlinkOp
    rename: RenameOp
    mkdir: MkdirOp
    rmdir: RmdirOp
    chmod: ChmodOp
    def __init__(self, write: _Optional[_Union[WriteOp, _Mapping]] = ..., truncate: _Optional[_Union[TruncateOp, _Mapping]] = ..., create: _Optional[_Union[CreateOp, _Mapping]] = ..., unlink: _Optional[_Union[UnlinkOp, _Mapping]] = ..., rename: _Optional[_Union[RenameOp, _Mapping]] = ..., mkdir: _Optional[_Union[MkdirOp, _Mapping]] = ..., rmdir: _Optional[_Union[RmdirOp, _Mapping]] = ..., chmod: _Optional[_Union[ChmodOp, _Mapping]] = ...) -> None: ...

class WriteOp(_message.Message):
    __slots__ = ("path", "offset", "data")
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    path: str
    offset: int
    data: bytes
    def __init__(self, path: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class TruncateOp(_message.Message):
    __slots__ = ("path", "size")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class CreateOp(_message.Message):
    __slots__ = ("path", "mode", "relation")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    path: str
    mode: int
    relation: Relation
    def __init__(self, path: _Optional[str] = ..., mode: _Optional[int] = ..., relation: _Optional[_Union[Relation, _Mapping]] = ...) -> None: ...

class UnlinkOp(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class RenameOp(_message.Message):
    __slots__ = ("src", "dst")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ...) -> None: ...

class MkdirOp(_message.Message):
    __slots__ = ("path", "mode")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    path: str
    mode: int
    def __init__(self, path: _Optional[str] = ..., mode: _Optional[int] = ...) -> None: ...

class RmdirOp(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class ChmodOp(_message.Message):
    __slots__ = ("path", "mode")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    path: str
    mode: int
    def __init__(self, path: _Optional[str] = ..., mode: _Optional[int] = ...) -> None: ...

class IngestBatch(_message.Message):
    __slots__ = ("batch_id", "ops", "wal_lsn", "timestamp_us")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    WAL_LSN_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    ops: _containers.RepeatedCompositeFieldContainer[FileOp]
    wal_lsn: int
    timestamp_us: int
    def __init__(self, batch_id: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[FileOp, _Mapping]]] = ..., wal_lsn: _Optional[int] = ..., timestamp_us: _Optional[int] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("open", "batch")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    open: IngestOpen
    batch: IngestBatch
    def __init__(self, open: _Optional[_Union[IngestOpen, _Mapping]] = ..., batch: _Optional[_Union[IngestBatch, _Mapping]] = ...) -> None: ...

class IngestOpen(_message.Message):
    __slots__ = ("tenant", "branch", "writer_epoch")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    WRITER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    branch: str
    writer_epoch: int
    def __init__(self, tenant: _Optional[str] = ..., branch: _Optional[str] = ..., writer_epoch: _Optional[int] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("batch_id", "lsn", "storage_full")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FULL_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    lsn: int
    storage_full: bool
    def __init__(self, batch_id: _Optional[int] = ..., lsn: _Optional[int] = ..., storage_full: _Optional[bool] = ...) -> None: ...

class TenantInfo(_message.Message):
    __slots__ = ("tenant", "generation", "branches", "pageserver_id", "address", "here", "detached")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    PAGESERVER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HERE_FIELD_NUMBER: _ClassVar[int]
    DETACHED_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    generation: int
    branches: int
    pageserver_id: str
    address: str
    here: bool
    detached: bool
    def __init__(self, tenant: _Optional[str] = ..., generation: _Optional[int] = ..., branches: _Optional[int] = ..., pageserver_id: _Optional[str] = ..., address: _Optional[str] = ..., here: _Optional[bool] = ..., detached: _Optional[bool] = ...) -> None: ...

class Quotas(_message.Message):
    __slots__ = ("max_branches", "max_computes", "max_ttl_s", "max_storage")
    MAX_BRANCHES_FIELD_NUMBER: _ClassVar[int]
    MAX_COMPUTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TTL_S_FIELD_NUMBER: _ClassVar[int]
    MAX_STORAGE_FIELD_NUMBER: _ClassVar[int]
    max_branches: int
    max_computes: int
    max_ttl_s: int
    max_storage: int
    def __init__(self, max_branches: _Optional[int] = ..., max_computes: _Optional[int] = ..., max_ttl_s: _Optional[int] = ..., max_storage: _Optional[int] = ...) -> None: ...

class Durability(_message.Message):
    __slots__ = ("mode", "max_lag_s", "description")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_LAG_S_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    mode: str
    max_lag_s: float
    description: str
    def __init__(self, mode: _Optional[str] = ..., max_lag_s: _Optional[float] = ..., description: _Optional[str] = ...) -> None: ...

class GetTenantRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class GetTenantResponse(_message.Message):
    __slots__ = ("tenant", "quotas", "owned_bytes", "logical_bytes", "stored_bytes", "durability", "history_s", "history_window_s", "history_window_from", "history_bytes", "reclaim_bytes")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    OWNED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_S_FIELD_NUMBER: _ClassVar[int]
    HISTORY_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    HISTORY_WINDOW_FROM_FIELD_NUMBER: _ClassVar[int]
    HISTORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECLAIM_BYTES_FIELD_NUMBER: _ClassVar[int]
    tenant: TenantInfo
    quotas: Quotas
    owned_bytes: int
    logical_bytes: int
    stored_bytes: int
    durability: Durability
    history_s: int
    history_window_s: float
    history_window_from: str
    history_bytes: int
    reclaim_bytes: int
    def __init__(self, tenant: _Optional[_Union[TenantInfo, _Mapping]] = ..., quotas: _Optional[_Union[Quotas, _Mapping]] = ..., owned_bytes: _Optional[int] = ..., logical_bytes: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., durability: _Optional[_Union[Durability, _Mapping]] = ..., history_s: _Optional[int] = ..., history_window_s: _Optional[float] = ..., history_window_from: _Optional[str] = ..., history_bytes: _Optional[int] = ..., reclaim_bytes: _Optional[int] = ...) -> None: ...

class SetHistoryRequest(_message.Message):
    __slots__ = ("tenant", "history_s")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_S_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    history_s: int
    def __init__(self, tenant: _Optional[str] = ..., history_s: _Optional[int] = ...) -> None: ...

class SetHistoryResponse(_message.Message):
    __slots__ = ("history_s", "history_window_s", "history_window_from")
    HISTORY_S_FIELD_NUMBER: _ClassVar[int]
    HISTORY_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    HISTORY_WINDOW_FROM_FIELD_NUMBER: _ClassVar[int]
    history_s: int
    history_window_s: float
    history_window_from: str
    def __init__(self, history_s: _Optional[int] = ..., history_window_s: _Optional[float] = ..., history_window_from: _Optional[str] = ...) -> None: ...

class SetQuotasRequest(_message.Message):
    __slots__ = ("tenant", "quotas")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    quotas: Quotas
    def __init__(self, tenant: _Optional[str] = ..., quotas: _Optional[_Union[Quotas, _Mapping]] = ...) -> None: ...

class SetQuotasResponse(_message.Message):
    __slots__ = ("quotas",)
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    quotas: Quotas
    def __init__(self, quotas: _Optional[_Union[Quotas, _Mapping]] = ...) -> None: ...

class SetDurabilityRequest(_message.Message):
    __slots__ = ("tenant", "durability")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    durability: Durability
    def __init__(self, tenant: _Optional[str] = ..., durability: _Optional[_Union[Durability, _Mapping]] = ...) -> None: ...

class SetDurabilityResponse(_message.Message):
    __slots__ = ("durability",)
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    durability: Durability
    def __init__(self, durability: _Optional[_Union[Durability, _Mapping]] = ...) -> None: ...

class CreateTenantRequest(_message.Message):
    __slots__ = ("tenant", "empty", "durability", "history_s")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EMPTY_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_S_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    empty: bool
    durability: Durability
    history_s: int
    def __init__(self, tenant: _Optional[str] = ..., empty: _Optional[bool] = ..., durability: _Optional[_Union[Durability, _Mapping]] = ..., history_s: _Optional[int] = ...) -> None: ...

class CreateTenantResponse(_message.Message):
    __slots__ = ("tenant", "main_lsn")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MAIN_LSN_FIELD_NUMBER: _ClassVar[int]
    tenant: TenantInfo
    main_lsn: int
    def __init__(self, tenant: _Optional[_Union[TenantInfo, _Mapping]] = ..., main_lsn: _Optional[int] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantInfo]
    def __init__(self, tenants: _Optional[_Iterable[_Union[TenantInfo, _Mapping]]] = ...) -> None: ...

class DeleteTenantRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class DeleteTenantResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AttachTenantRequest(_message.Message):
    __slots__ = ("tenant", "force")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    force: bool
    def __init__(self, tenant: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class AttachTenantResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: TenantInfo
    def __init__(self, tenant: _Optional[_Union[TenantInfo, _Mapping]] = ...) -> None: ...

class DetachTenantRequest(_message.Message):
    __slots__ = ("tenant", "force")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    force: bool
    def __init__(self, tenant: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DetachTenantResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: TenantInfo
    def __init__(self, tenant: _Optional[_Union[TenantInfo, _Mapping]] = ...) -> None: ...

class BranchInfo(_message.Message):
    __slots__ = ("name", "timeline_id", "parent", "branch_lsn", "last_lsn", "last_wal_lsn", "last_time_us", "children", "created_at_us", "expires_at_us", "logical_size", "owned_bytes", "writer_epoch", "gc_cutoff", "writer", "suspend_timeout_s", "protected", "last_batch", "history_s", "history_window_s", "history_window_from", "history_bytes", "reclaim_bytes", "ephemeral", "lease_s", "undo_off")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_LSN_FIELD_NUMBER: _ClassVar[int]
    LAST_LSN_FIELD_NUMBER: _ClassVar[int]
    LAST_WAL_LSN_FIELD_NUMBER: _ClassVar[int]
    LAST_TIME_US_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_US_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    OWNED_BYTES_FIELD_NUMBER: _ClassVar[int]
    WRITER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    GC_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    WRITER_FIELD_NUMBER: _ClassVar[int]
    SUSPEND_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_BATCH_FIELD_NUMBER: _ClassVar[int]
    HISTORY_S_FIELD_NUMBER: _ClassVar[int]
    HISTORY_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    HISTORY_WINDOW_FROM_FIELD_NUMBER: _ClassVar[int]
    HISTORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECLAIM_BYTES_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    UNDO_OFF_FIELD_NUMBER: _ClassVar[int]
    name: str
    timeline_id: str
    parent: str
    branch_lsn: int
    last_lsn: int
    last_wal_lsn: int
    last_time_us: int
    children: _containers.RepeatedScalarFieldContainer[str]
    created_at_us: int
    expires_at_us: int
    logical_size: int
    owned_bytes: int
    writer_epoch: int
    gc_cutoff: int
    writer: str
    suspend_timeout_s: int
    protected: bool
    last_batch: AppliedBatch
    history_s: int
    history_window_s: float
    history_window_from: str
    history_bytes: int
    reclaim_bytes: int
    ephemeral: bool
    lease_s: int
    undo_off: bool
    def __init__(self, name: _Optional[str] = ..., timeline_id: _Optional[str] = ..., parent: _Optional[str] = ..., branch_lsn: _Optional[int] = ..., last_lsn: _Optional[int] = ..., last_wal_lsn: _Optional[int] = ..., last_time_us: _Optional[int] = ..., children: _Optional[_Iterable[str]] = ..., created_at_us: _Optional[int] = ..., expires_at_us: _Optional[int] = ..., logical_size: _Optional[int] = ..., owned_bytes: _Optional[int] = ..., writer_epoch: _Optional[int] = ..., gc_cutoff: _Optional[int] = ..., writer: _Optional[str] = ..., suspend_timeout_s: _Optional[int] = ..., protected: _Optional[bool] = ..., last_batch: _Optional[_Union[AppliedBatch, _Mapping]] = ..., history_s: _Optional[int] = ..., history_window_s: _Optional[float] = ..., history_window_from: _Optional[str] = ..., history_bytes: _Optional[int] = ..., reclaim_bytes: _Optional[int] = ..., ephemeral: _Optional[bool] = ..., lease_s: _Optional[int] = ..., undo_off: _Optional[bool] = ...) -> None: ...

class AppliedBatch(_message.Message):
    __slots__ = ("writer_epoch", "batch_id", "lsn")
    WRITER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    writer_epoch: int
    batch_id: int
    lsn: int
    def __init__(self, writer_epoch: _Optional[int] = ..., batch_id: _Optional[int] = ..., lsn: _Optional[int] = ...) -> None: ...

class CreateBranchRequest(_message.Message):
    __slots__ = ("tenant", "name", "parent", "lsn", "wal_lsn", "time_us", "checkpoint", "ttl_s", "suspend_timeout_s", "protected", "history_s", "ephemeral", "lease_s", "undo_off")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    WAL_LSN_FIELD_NUMBER: _ClassVar[int]
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    SUSPEND_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_FIELD_NUMBER: _ClassVar[int]
    HISTORY_S_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    UNDO_OFF_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    parent: str
    lsn: int
    wal_lsn: int
    time_us: int
    checkpoint: str
    ttl_s: int
    suspend_timeout_s: int
    protected: bool
    history_s: int
    ephemeral: bool
    lease_s: int
    undo_off: bool
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., parent: _Optional[str] = ..., lsn: _Optional[int] = ..., wal_lsn: _Optional[int] = ..., time_us: _Optional[int] = ..., checkpoint: _Optional[str] = ..., ttl_s: _Optional[int] = ..., suspend_timeout_s: _Optional[int] = ..., protected: _Optional[bool] = ..., history_s: _Optional[int] = ..., ephemeral: _Optional[bool] = ..., lease_s: _Optional[int] = ..., undo_off: _Optional[bool] = ...) -> None: ...

class CreateBranchResponse(_message.Message):
    __slots__ = ("branch",)
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    branch: BranchInfo
    def __init__(self, branch: _Optional[_Union[BranchInfo, _Mapping]] = ...) -> None: ...

class UpdateBranchRequest(_message.Message):
    __slots__ = ("tenant", "name", "ttl_s", "suspend_timeout_s", "protected", "history_s", "renew_lease", "undo_off")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    SUSPEND_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_FIELD_NUMBER: _ClassVar[int]
    HISTORY_S_FIELD_NUMBER: _ClassVar[int]
    RENEW_LEASE_FIELD_NUMBER: _ClassVar[int]
    UNDO_OFF_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    ttl_s: int
    suspend_timeout_s: int
    protected: bool
    history_s: int
    renew_lease: bool
    undo_off: bool
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., ttl_s: _Optional[int] = ..., suspend_timeout_s: _Optional[int] = ..., protected: _Optional[bool] = ..., history_s: _Optional[int] = ..., renew_lease: _Optional[bool] = ..., undo_off: _Optional[bool] = ...) -> None: ...

class UpdateBranchResponse(_message.Message):
    __slots__ = ("branch",)
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    branch: BranchInfo
    def __init__(self, branch: _Optional[_Union[BranchInfo, _Mapping]] = ...) -> None: ...

class ListBranchesRequest(_message.Message):
    __slots__ = ("tenant", "page_size", "page_token", "history_bytes")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HISTORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    page_size: int
    page_token: str
    history_bytes: bool
    def __init__(self, tenant: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., history_bytes: _Optional[bool] = ...) -> None: ...

class ListBranchesResponse(_message.Message):
    __slots__ = ("branches", "next_page_token")
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    branches: _containers.RepeatedCompositeFieldContainer[BranchInfo]
    next_page_token: str
    def __init__(self, branches: _Optional[_Iterable[_Union[BranchInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetBranchRequest(_message.Message):
    __slots__ = ("tenant", "name", "head_only")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEAD_ONLY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    head_only: bool
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., head_only: _Optional[bool] = ...) -> None: ...

class GetBranchResponse(_message.Message):
    __slots__ = ("branch",)
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    branch: BranchInfo
    def __init__(self, branch: _Optional[_Union[BranchInfo, _Mapping]] = ...) -> None: ...

class RestoreBranchRequest(_message.Message):
    __slots__ = ("tenant", "name", "lsn", "wal_lsn", "time_us", "checkpoint", "parent_latest", "preserve_as")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    WAL_LSN_FIELD_NUMBER: _ClassVar[int]
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    PARENT_LATEST_FIELD_NUMBER: _ClassVar[int]
    PRESERVE_AS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    lsn: int
    wal_lsn: int
    time_us: int
    checkpoint: str
    parent_latest: bool
    preserve_as: str
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., lsn: _Optional[int] = ..., wal_lsn: _Optional[int] = ..., time_us: _Optional[int] = ..., checkpoint: _Optional[str] = ..., parent_latest: _Optional[bool] = ..., preserve_as: _Optional[str] = ...) -> None: ...

class RestoreBranchResponse(_message.Message):
    __slots__ = ("branch", "preserved_as")
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    PRESERVED_AS_FIELD_NUMBER: _ClassVar[int]
    branch: BranchInfo
    preserved_as: str
    def __init__(self, branch: _Optional[_Union[BranchInfo, _Mapping]] = ..., preserved_as: _Optional[str] = ...) -> None: ...

class DeleteBranchRequest(_message.Message):
    __slots__ = ("tenant", "name", "cascade", "force", "dry_run")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    cascade: bool
    force: bool
    dry_run: bool
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., cascade: _Optional[bool] = ..., force: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class DeleteBranchResponse(_message.Message):
    __slots__ = ("deleted", "checkpoints", "freed_bytes")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    checkpoints: _containers.RepeatedScalarFieldContainer[str]
    freed_bytes: int
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., checkpoints: _Optional[_Iterable[str]] = ..., freed_bytes: _Optional[int] = ...) -> None: ...

class CheckpointInfo(_message.Message):
    __slots__ = ("name", "branch", "timeline_id", "lsn", "created_at_us", "statement", "expires_at_us", "held_bytes", "reclaim_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_ID_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_US_FIELD_NUMBER: _ClassVar[int]
    HELD_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECLAIM_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    branch: str
    timeline_id: str
    lsn: int
    created_at_us: int
    statement: str
    expires_at_us: int
    held_bytes: int
    reclaim_bytes: int
    def __init__(self, name: _Optional[str] = ..., branch: _Optional[str] = ..., timeline_id: _Optional[str] = ..., lsn: _Optional[int] = ..., created_at_us: _Optional[int] = ..., statement: _Optional[str] = ..., expires_at_us: _Optional[int] = ..., held_bytes: _Optional[int] = ..., reclaim_bytes: _Optional[int] = ...) -> None: ...

class CreateCheckpointRequest(_message.Message):
    __slots__ = ("tenant", "branch", "name", "lsn", "at_lsn", "statement", "ttl_s")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    AT_LSN_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    branch: str
    name: str
    lsn: int
    at_lsn: bool
    statement: str
    ttl_s: int
    def __init__(self, tenant: _Optional[str] = ..., branch: _Optional[str] = ..., name: _Optional[str] = ..., lsn: _Optional[int] = ..., at_lsn: _Optional[bool] = ..., statement: _Optional[str] = ..., ttl_s: _Optional[int] = ...) -> None: ...

class CreateCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: CheckpointInfo
    def __init__(self, checkpoint: _Optional[_Union[CheckpointInfo, _Mapping]] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("tenant", "sizes")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    sizes: bool
    def __init__(self, tenant: _Optional[str] = ..., sizes: _Optional[bool] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints",)
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[CheckpointInfo]
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[CheckpointInfo, _Mapping]]] = ...) -> None: ...

class DeleteCheckpointRequest(_message.Message):
    __slots__ = ("tenant", "name", "dry_run")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    dry_run: bool
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class DeleteCheckpointResponse(_message.Message):
    __slots__ = ("freed_bytes", "gc_bytes")
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    GC_BYTES_FIELD_NUMBER: _ClassVar[int]
    freed_bytes: int
    gc_bytes: int
    def __init__(self, freed_bytes: _Optional[int] = ..., gc_bytes: _Optional[int] = ...) -> None: ...

class GcRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class GcTimelineReport(_message.Message):
    __slots__ = ("timeline_id", "branches", "cutoff_lsn", "layers_removed", "bytes_removed", "current_bytes", "window_bytes", "checkpoint_bytes", "branch_point_bytes", "pinned_by", "history_window_s", "history_window_from")
    TIMELINE_ID_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    CUTOFF_LSN_FIELD_NUMBER: _ClassVar[int]
    LAYERS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    CURRENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_BYTES_FIELD_NUMBER: _ClassVar[int]
    BRANCH_POINT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PINNED_BY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    HISTORY_WINDOW_FROM_FIELD_NUMBER: _ClassVar[int]
    timeline_id: str
    branches: _containers.RepeatedScalarFieldContainer[str]
    cutoff_lsn: int
    layers_removed: int
    bytes_removed: int
    current_bytes: int
    window_bytes: int
    checkpoint_bytes: int
    branch_point_bytes: int
    pinned_by: _containers.RepeatedScalarFieldContainer[str]
    history_window_s: float
    history_window_from: str
    def __init__(self, timeline_id: _Optional[str] = ..., branches: _Optional[_Iterable[str]] = ..., cutoff_lsn: _Optional[int] = ..., layers_removed: _Optional[int] = ..., bytes_removed: _Optional[int] = ..., current_bytes: _Optional[int] = ..., window_bytes: _Optional[int] = ..., checkpoint_bytes: _Optional[int] = ..., branch_point_bytes: _Optional[int] = ..., pinned_by: _Optional[_Iterable[str]] = ..., history_window_s: _Optional[float] = ..., history_window_from: _Optional[str] = ...) -> None: ...

class GcResponse(_message.Message):
    __slots__ = ("timelines", "layers_removed", "bytes_removed", "reports", "history_window_s")
    TIMELINES_FIELD_NUMBER: _ClassVar[int]
    LAYERS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    timelines: int
    layers_removed: int
    bytes_removed: int
    reports: _containers.RepeatedCompositeFieldContainer[GcTimelineReport]
    history_window_s: float
    def __init__(self, timelines: _Optional[int] = ..., layers_removed: _Optional[int] = ..., bytes_removed: _Optional[int] = ..., reports: _Optional[_Iterable[_Union[GcTimelineReport, _Mapping]]] = ..., history_window_s: _Optional[float] = ...) -> None: ...

class CompactRequest(_message.Message):
    __slots__ = ("tenant", "force")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    force: bool
    def __init__(self, tenant: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class CompactResponse(_message.Message):
    __slots__ = ("l0_merged", "l1_written", "images_written")
    L0_MERGED_FIELD_NUMBER: _ClassVar[int]
    L1_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    IMAGES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    l0_merged: int
    l1_written: int
    images_written: int
    def __init__(self, l0_merged: _Optional[int] = ..., l1_written: _Optional[int] = ..., images_written: _Optional[int] = ...) -> None: ...

class AttachWriterRequest(_message.Message):
    __slots__ = ("tenant", "branch", "holder", "force")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    branch: str
    holder: str
    force: bool
    def __init__(self, tenant: _Optional[str] = ..., branch: _Optional[str] = ..., holder: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class AttachWriterResponse(_message.Message):
    __slots__ = ("writer_epoch", "lsn", "lease_ms")
    WRITER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    writer_epoch: int
    lsn: int
    lease_ms: int
    def __init__(self, writer_epoch: _Optional[int] = ..., lsn: _Optional[int] = ..., lease_ms: _Optional[int] = ...) -> None: ...

class RenewWriterRequest(_message.Message):
    __slots__ = ("tenant", "branch", "writer_epoch", "holder")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    WRITER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    branch: str
    writer_epoch: int
    holder: str
    def __init__(self, tenant: _Optional[str] = ..., branch: _Optional[str] = ..., writer_epoch: _Optional[int] = ..., holder: _Optional[str] = ...) -> None: ...

class RenewWriterResponse(_message.Message):
    __slots__ = ("lease_ms",)
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    lease_ms: int
    def __init__(self, lease_ms: _Optional[int] = ...) -> None: ...

class DetachWriterRequest(_message.Message):
    __slots__ = ("tenant", "branch", "writer_epoch")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    WRITER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    branch: str
    writer_epoch: int
    def __init__(self, tenant: _Optional[str] = ..., branch: _Optional[str] = ..., writer_epoch: _Optional[int] = ...) -> None: ...

class DetachWriterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("tenant", "scope", "ttl_s", "branches", "read_only")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    scope: str
    ttl_s: int
    branches: _containers.RepeatedScalarFieldContainer[str]
    read_only: bool
    def __init__(self, tenant: _Optional[str] = ..., scope: _Optional[str] = ..., ttl_s: _Optional[int] = ..., branches: _Optional[_Iterable[str]] = ..., read_only: _Optional[bool] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token", "expires_at", "token_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: int
    token_id: str
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[int] = ..., token_id: _Optional[str] = ...) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("token_id", "tenant", "scope", "branches", "read_only", "created_at", "expires_at", "revoked_at", "renewed_from")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    RENEWED_FROM_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    tenant: str
    scope: str
    branches: _containers.RepeatedScalarFieldContainer[str]
    read_only: bool
    created_at: int
    expires_at: int
    revoked_at: int
    renewed_from: str
    def __init__(self, token_id: _Optional[str] = ..., tenant: _Optional[str] = ..., scope: _Optional[str] = ..., branches: _Optional[_Iterable[str]] = ..., read_only: _Optional[bool] = ..., created_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., revoked_at: _Optional[int] = ..., renewed_from: _Optional[str] = ...) -> None: ...

class RenewTokenRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: TokenInfo
    def __init__(self, token: _Optional[_Union[TokenInfo, _Mapping]] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("at_us", "token_id", "scope", "peer", "action", "tenant", "target", "details")
    AT_US_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    at_us: int
    token_id: str
    scope: str
    peer: str
    action: str
    tenant: str
    target: str
    details: str
    def __init__(self, at_us: _Optional[int] = ..., token_id: _Optional[str] = ..., scope: _Optional[str] = ..., peer: _Optional[str] = ..., action: _Optional[str] = ..., tenant: _Optional[str] = ..., target: _Optional[str] = ..., details: _Optional[str] = ...) -> None: ...

class ReadAuditRequest(_message.Message):
    __slots__ = ("since_us",)
    SINCE_US_FIELD_NUMBER: _ClassVar[int]
    since_us: int
    def __init__(self, since_us: _Optional[int] = ...) -> None: ...

class BranchChangesRequest(_message.Message):
    __slots__ = ("tenant", "branch", "lsn", "time_us", "checkpoint", "wal_lsn")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    LSN_FIELD_NUMBER: _ClassVar[int]
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    WAL_LSN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    branch: str
    lsn: int
    time_us: int
    checkpoint: str
    wal_lsn: int
    def __init__(self, tenant: _Optional[str] = ..., branch: _Optional[str] = ..., lsn: _Optional[int] = ..., time_us: _Optional[int] = ..., checkpoint: _Optional[str] = ..., wal_lsn: _Optional[int] = ...) -> None: ...

class RelationChange(_message.Message):
    __slots__ = ("relation", "database", "schema", "name", "kind", "table", "change", "pages", "writes", "bytes", "oid")
    RELATION_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    relation: Relation
    database: str
    schema: str
    name: str
    kind: str
    table: str
    change: str
    pages: int
    writes: int
    bytes: int
    oid: int
    def __init__(self, relation: _Optional[_Union[Relation, _Mapping]] = ..., database: _Optional[str] = ..., schema: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., table: _Optional[str] = ..., change: _Optional[str] = ..., pages: _Optional[int] = ..., writes: _Optional[int] = ..., bytes: _Optional[int] = ..., oid: _Optional[int] = ...) -> None: ...

class BranchChangesResponse(_message.Message):
    __slots__ = ("since_lsn", "upto_lsn", "relations", "pages", "bytes", "other_pages", "layers_read", "complete")
    SINCE_LSN_FIELD_NUMBER: _ClassVar[int]
    UPTO_LSN_FIELD_NUMBER: _ClassVar[int]
    RELATIONS_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    OTHER_PAGES_FIELD_NUMBER: _ClassVar[int]
    LAYERS_READ_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    since_lsn: int
    upto_lsn: int
    relations: _containers.RepeatedCompositeFieldContainer[RelationChange]
    pages: int
    bytes: int
    other_pages: int
    layers_read: int
    complete: bool
    def __init__(self, since_lsn: _Optional[int] = ..., upto_lsn: _Optional[int] = ..., relations: _Optional[_Iterable[_Union[RelationChange, _Mapping]]] = ..., pages: _Optional[int] = ..., bytes: _Optional[int] = ..., other_pages: _Optional[int] = ..., layers_read: _Optional[int] = ..., complete: _Optional[bool] = ...) -> None: ...

class ReadAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class StorageHistoryRequest(_message.Message):
    __slots__ = ("tenant", "since_us")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SINCE_US_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    since_us: int
    def __init__(self, tenant: _Optional[str] = ..., since_us: _Optional[int] = ...) -> None: ...

class BranchBytes(_message.Message):
    __slots__ = ("name", "owned_bytes", "history_bytes", "logical_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNED_BYTES_FIELD_NUMBER: _ClassVar[int]
    HISTORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    owned_bytes: int
    history_bytes: int
    logical_size: int
    def __init__(self, name: _Optional[str] = ..., owned_bytes: _Optional[int] = ..., history_bytes: _Optional[int] = ..., logical_size: _Optional[int] = ...) -> None: ...

class CheckpointBytes(_message.Message):
    __slots__ = ("name", "branch", "held_bytes", "reclaim_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    HELD_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECLAIM_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    branch: str
    held_bytes: int
    reclaim_bytes: int
    def __init__(self, name: _Optional[str] = ..., branch: _Optional[str] = ..., held_bytes: _Optional[int] = ..., reclaim_bytes: _Optional[int] = ...) -> None: ...

class StorageSample(_message.Message):
    __slots__ = ("at_us", "stored_bytes", "branches", "checkpoints")
    AT_US_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    at_us: int
    stored_bytes: int
    branches: _containers.RepeatedCompositeFieldContainer[BranchBytes]
    checkpoints: _containers.RepeatedCompositeFieldContainer[CheckpointBytes]
    def __init__(self, at_us: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., branches: _Optional[_Iterable[_Union[BranchBytes, _Mapping]]] = ..., checkpoints: _Optional[_Iterable[_Union[CheckpointBytes, _Mapping]]] = ...) -> None: ...

class StorageHistoryResponse(_message.Message):
    __slots__ = ("samples", "period_s")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[StorageSample]
    period_s: float
    def __init__(self, samples: _Optional[_Iterable[_Union[StorageSample, _Mapping]]] = ..., period_s: _Optional[float] = ...) -> None: ...
