"""The metadata backup file: a portable, checked, compressed logical dump.

Why a logical dump rather than a copy of the database file: it restores into SQLite or
PostgreSQL whichever it came from, it survives a schema upgrade (restore creates the
snapshot's schema through the migrations, loads the rows, then upgrades), and it can be
checked end to end before anything is written to a database.

Layout::

    cloudgrpc-metadata-backup 1 zstd\\n        one plain line: what the file is
    <one zstd frame, content checksum on>      JSON lines:
      {"kind": "header", "format": ..., "version": 1, "created_at": ..., "revision": ...,
       "gateway_version": ..., "source_database": "sqlite" | "postgresql",
       "contains_secrets": true}
      {"kind": "keys", "keys": {"cluster_secret": ..., "otp_key": ..., ...}}
      {"kind": "table", "name": "users", "columns": [["id", "str"], ...]}
      [row values in column order]             one JSON array per row
      ...                                      (tables in dependency order)
      {"kind": "end", "tables": {"users": 3, ...}, "rows": N, "sha256": ...}

``end.sha256`` is the SHA-256 of every decompressed byte before the end line, so a file
that decompresses cleanly but was cut or edited is still refused; zstd's own checksum
catches damage to the compressed bytes. Values carry their column's type tag so datetimes
and bytes come back as what they were, whichever database reads them.

The file holds secrets (the cluster secret, the OTP key, the admin key) and every
account's metadata: it is written 0600 and must be kept like the gateway's DATA_DIR.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import zstandard

from cloudgrpc_proto.errors import DataLoss

FORMAT_NAME = "cloudgrpc-metadata-backup"
FORMAT_VERSION = 1
MAGIC = f"{FORMAT_NAME} {FORMAT_VERSION} zstd\n".encode("ascii")
FORMAT_LABEL = f"{FORMAT_NAME}/{FORMAT_VERSION}+zstd"  # BackupPiece.format
ZSTD_LEVEL = 3  # the default: a backup's speed matters more than its last few percent
READ_BLOCK = 1 << 20

# Type tags of the values, by the column's Python type.
_TAGS: dict[type, str] = {
    bool: "bool", int: "int", float: "float", str: "str", bytes: "bytes",
    dt.datetime: "datetime", dt.date: "date", dt.time: "time", decimal.Decimal: "decimal",
}


def type_tag(column: Any) -> str:
    """The tag a column's values are written with ("json" for types without a Python type:
    they are written as JSON and read back as such)."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return "json"
    for kind, tag in _TAGS.items():  # bool before int: a bool is an int too
        if issubclass(python_type, kind):
            return tag
    return "json"


def encode_value(tag: str, value: Any) -> Any:
    if value is None:
        return None
    if tag in ("datetime", "date", "time"):
        return value.isoformat()
    if tag == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if tag == "decimal":
        return str(value)
    if tag == "int":
        return int(value)
    if tag == "bool":
        return bool(value)
    return value


def decode_value(tag: str, value: Any) -> Any:
    if value is None:
        return None
    if tag == "datetime":
        return dt.datetime.fromisoformat(value)
    if tag == "date":
        return dt.date.fromisoformat(value)
    if tag == "time":
        return dt.time.fromisoformat(value)
    if tag == "bytes":
        return base64.b64decode(value)
    if tag == "decimal":
        return decimal.Decimal(value)
    return value


def json_line(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


class SnapshotEncoder:
    """Turns records into the file's bytes as they come: ``add`` returns compressed bytes
    ready to send (often none), ``flush`` pushes out what the compressor holds, ``finish``
    writes the end record and closes the frame."""

    def __init__(self) -> None:
        self._compress = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, write_checksum=True).compressobj()
        self._content = hashlib.sha256()
        self._file = hashlib.sha256()
        self.size = 0
        self._pending = MAGIC  # sent with the first compressed bytes

    def _out(self, data: bytes) -> bytes:
        if self._pending:
            data, self._pending = self._pending + data, b""
        self._file.update(data)
        self.size += len(data)
        return data

    def add(self, record: Any) -> bytes:
        line = json_line(record)
        self._content.update(line)
        return self._out(self._compress.compress(line))

    def flush(self) -> bytes:
        return self._out(self._compress.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))

    def finish(self, end: dict[str, Any]) -> bytes:
        line = json_line({**end, "kind": "end", "sha256": self._content.hexdigest()})
        return self._out(self._compress.compress(line) + self._compress.flush())

    @property
    def sha256(self) -> str:
        return self._file.hexdigest()


@dataclass
class TableDump:
    name: str
    columns: list[tuple[str, str]]  # (column name, type tag)
    rows: int = 0


@dataclass
class SnapshotInfo:
    """What a checked backup file holds (everything but the rows)."""

    header: dict[str, Any]
    keys: dict[str, str]
    tables: list[TableDump] = field(default_factory=list)
    rows: int = 0

    @property
    def revision(self) -> str:
        return str(self.header.get("revision") or "")


def _bad(path: str, why: str) -> DataLoss:
    return DataLoss(f"{path} is not a usable CloudGrpc metadata backup: {why}")


def _decompressed(f: IO[bytes], path: str) -> Iterator[bytes]:
    """The frame's bytes, block by block; refuses a truncated frame and trailing data."""
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        if magic.startswith(f"{FORMAT_NAME} ".encode()):
            raise _bad(path, f"format {magic.decode('ascii', 'replace').strip()!r} is not "
                       f"the one this version reads ({MAGIC.decode().strip()!r})")
        raise _bad(path, "it does not start with the backup header (wrong file?)")
    inflate = zstandard.ZstdDecompressor().decompressobj()
    while True:
        block = f.read(READ_BLOCK)
        if not block:
            break
        try:
            data = inflate.decompress(block)
        except zstandard.ZstdError as exc:
            raise _bad(path, f"the compressed data is corrupt ({exc})") from None
        if data:
            yield data
        if inflate.eof:
            if inflate.unused_data or f.read(1):
                raise _bad(path, "unexpected bytes after the end of the backup")
            return
    raise _bad(path, "truncated: the file ends before the backup does")


def read_records(f: IO[bytes], path: str) -> Iterator[Any]:
    """Every record of the file in order (dicts for records, lists for rows), checking
    the content's SHA-256 against the end record, which is yielded last.

    The whole file must be read to know it is intact: callers that load rows check the
    file with ``check_snapshot`` first.
    """
    content = hashlib.sha256()
    rest = b""
    ended = False
    for block in _decompressed(f, path):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if ended:
                raise _bad(path, "records after the end record")
            try:
                record = json.loads(line)
            except ValueError:
                raise _bad(path, "a record is not valid JSON (corrupt)") from None
            if isinstance(record, dict) and record.get("kind") == "end":
                if record.get("sha256") != content.hexdigest():
                    raise _bad(path, "its content does not match its SHA-256 (corrupt)")
                ended = True
            else:
                content.update(line + b"\n")
            yield record
    if rest:
        raise _bad(path, "truncated: the last record is incomplete")
    if not ended:
        raise _bad(path, "truncated: no end record")


def check_snapshot(path: str) -> SnapshotInfo:
    """Read the whole file and check it; what it holds, or ``DataLoss`` saying what is
    wrong (missing header, corrupt, truncated, counts that do not add up)."""
    info: SnapshotInfo | None = None
    current: TableDump | None = None
    counted: dict[str, int] = {}
    with open(path, "rb") as f:
        for record in read_records(f, path):
            if isinstance(record, list):
                if current is None:
                    raise _bad(path, "a row before any table")
                if len(record) != len(current.columns):
                    raise _bad(path, f"a row of {current.name} has {len(record)} values, "
                               f"not {len(current.columns)}")
                current.rows += 1
                continue
            kind = record.get("kind") if isinstance(record, dict) else None
            if info is None:
                if kind != "header" or record.get("format") != FORMAT_NAME:
                    raise _bad(path, "no header record")
                if record.get("version") != FORMAT_VERSION:
                    raise _bad(path, f"format version {record.get('version')} is not "
                               f"{FORMAT_VERSION}")
                info = SnapshotInfo(header=record, keys={})
            elif kind == "keys":
                info.keys = {str(k): str(v) for k, v in (record.get("keys") or {}).items()}
            elif kind == "table":
                current = TableDump(str(record["name"]),
                                    [(str(n), str(t)) for n, t in record["columns"]])
                info.tables.append(current)
            elif kind == "end":
                counted = {str(k): int(v) for k, v in (record.get("tables") or {}).items()}
            else:
                raise _bad(path, f"unknown record kind {kind!r}")
    assert info is not None  # read_records refuses a file without an end record
    found = {t.name: t.rows for t in info.tables}
    if found != counted:
        raise _bad(path, "the row counts do not match its end record")
    if not info.revision:
        raise _bad(path, "the header names no schema revision")
    info.rows = sum(found.values())
    return info
