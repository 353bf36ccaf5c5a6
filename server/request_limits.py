"""Length limits for every string on the wire, checked once at the edge.

A request message is walked through its descriptor (nested messages such as ``FileMetadata``
inside ``UploadFileRequest`` and the items of batch requests included), so a field added to
the contract later is bounded by default: by its name in ``FIELD_LIMITS``, else by a rule on
the name's ending, else by ``DEFAULT_STRING_BYTES``. Repeated fields have a bound on their
count as well. Lengths are UTF-8 bytes, the unit storage and file systems count in.

Nothing here knows a service: a too-long value is refused with ``InvalidArgument`` naming
the field (``metadata.filename``, ``files[3].metadata.mime_type``) before any handler runs,
so it changes nothing.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from cloudgrpc_proto.errors import InvalidArgument

NAME_BYTES = 255        # a file, folder or symlink name, as on POSIX file systems
PATH_BYTES = 4096       # a path or a symlink target (PATH_MAX)
EMAIL_BYTES = 254       # RFC 5321's longest forward path
TOKEN_BYTES = 1024      # session, refresh, verification and read tokens; keys and secrets
ID_BYTES = 128          # entry, file, folder, share, device, node, payment and upload ids
DEFAULT_STRING_BYTES = 1024
DEFAULT_REPEATED_COUNT = 10_000

# By ``Message.field`` first, then by field name (the same name means the same kind of
# value in every message). Where a value is stored, the limit is never above its column's
# length, so a long value is refused here and not by the database on PostgreSQL.
FIELD_LIMITS: dict[str, int] = {
    "RegisterNodeRequest.name": 100,
    "StorageTier.name": 50,
    "StorageTier.display_name": 100,
    "StorageTier.description": 500,
    "filename": NAME_BYTES,
    "name": NAME_BYTES,
    "new_name": NAME_BYTES,
    "display_name": NAME_BYTES,
    "device_name": 200,
    "full_name": 200,
    "node_name": 100,
    "mime_type": 200,
    "path": PATH_BYTES,
    "target": PATH_BYTES,
    "symlink_target": PATH_BYTES,
    "original_path": PATH_BYTES,
    "sha256": 64,            # hex digest
    "phone_number": 32,      # as typed; stored normalized (digits only)
    "otp": 16,
    "permission": 8,
    "provider": 20,
    "host": 255,             # a DNS name
    "event_types": 64,
    "service": NAME_BYTES,   # grpc.health.v1 HealthCheckRequest.service
}

# By the name's ending, for fields not named above.
SUFFIX_LIMITS: tuple[tuple[str, int], ...] = (
    ("_id", ID_BYTES),
    ("_ids", ID_BYTES),
    ("email", EMAIL_BYTES),
    ("_token", TOKEN_BYTES),
    ("_key", TOKEN_BYTES),
    ("_secret", TOKEN_BYTES),
)

# How many items a repeated field may hold (by field name); others DEFAULT_REPEATED_COUNT.
REPEATED_LIMITS: dict[str, int] = {
    "sha256": 100_000,          # FindChunks: a whole large file's chunk list
    "corrupt_chunks": 100_000,  # a node's heartbeat after a scrub
    "files": 1000,              # UploadSmallFiles
    "changes": 256,             # ApplyFolderChanges
    "event_types": 64,
}


def string_limit(field: FieldDescriptor) -> int:
    """The most UTF-8 bytes ``field`` may hold."""
    name = field.name
    limit = FIELD_LIMITS.get(f"{field.containing_type.name}.{name}", FIELD_LIMITS.get(name))
    if limit is not None:
        return limit
    for suffix, bound in SUFFIX_LIMITS:
        if name.endswith(suffix):
            return bound
    return DEFAULT_STRING_BYTES


def repeated_limit(field: FieldDescriptor) -> int:
    return REPEATED_LIMITS.get(field.name, DEFAULT_REPEATED_COUNT)


def check_request(message: Message) -> None:
    """Raise ``InvalidArgument`` naming the first field of ``message`` over its limit."""
    _check(message, "")


def _check(message: Message, prefix: str) -> None:
    # ListFields: only the fields that are set, so a data message costs next to nothing.
    for field, value in message.ListFields():
        where = prefix + field.name
        if field.is_repeated:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                _check_map(field, value, where)
                continue
            bound = repeated_limit(field)
            if len(value) > bound:
                raise InvalidArgument(
                    f"{where} has too many items: at most {bound} (got {len(value)})")
            if field.type == FieldDescriptor.TYPE_STRING:
                limit = string_limit(field)
                for index, item in enumerate(value):
                    _check_string(f"{where}[{index}]", item, limit)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                for index, item in enumerate(value):
                    _check(item, f"{where}[{index}].")
        elif field.type == FieldDescriptor.TYPE_STRING:
            _check_string(where, value, string_limit(field))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            _check(value, where + ".")


def _check_map(field: FieldDescriptor, value: object, where: str) -> None:
    entries = dict(value)  # type: ignore[call-overload]
    if len(entries) > repeated_limit(field):
        raise InvalidArgument(f"{where} has too many items: at most {repeated_limit(field)}")
    for key, item in entries.items():
        if isinstance(key, str):
            _check_string(f"{where} key", key, DEFAULT_STRING_BYTES)
        if isinstance(item, str):
            _check_string(f"{where}[{key!r:.40}]", item, DEFAULT_STRING_BYTES)
        elif isinstance(item, Message):
            _check(item, f"{where}[{key!r:.40}].")


def _check_string(where: str, value: str, limit: int) -> None:
    # A character is 1 to 4 bytes: encode only when the count of characters cannot decide.
    if len(value) <= limit // 4:
        return
    size = len(value) if len(value) > limit else len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InvalidArgument(f"{where} is too long: at most {limit} bytes (got {size})")
