"""The gateway's metadata schema (SQLAlchemy 2.0 typed models).

Everything the system knows outside chunk bytes lives here, so gateways keep no state of
their own and several can share one PostgreSQL. Schema changes go through Alembic
migrations in ``migrations/``; ``tests/server/test_migrations.py`` checks that the models
and the migrations agree.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    storage_allocated: Mapped[int] = mapped_column(BigInteger)
    storage_used: Mapped[int] = mapped_column(BigInteger, default=0)
    root_folder_id: Mapped[str | None] = mapped_column(String(36))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_login: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Device(Base):
    """A sign-in: every Login/Enroll makes one, so the owner can see and end it.

    With a device name the client also gets a refresh token that renews sessions (a mount
    outlives 24 h). The token rotates on every use: ``token_hash`` is the current one,
    ``previous_token_hash`` the one it replaced at ``rotated_at``; the previous one is
    accepted once within a short grace (two processes sharing a keyring entry may race),
    and any other reuse of it ends the device, since then two parties hold the token.
    """

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # The client address of the last sign-in or renewal.
    last_address: Mapped[str] = mapped_column(String(200), default="")
    previous_token_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    previous_reuses: Mapped[int] = mapped_column(Integer, default=0)


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"),
                                                  index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class OtpCode(Base):
    """A one-time code. Only its keyed hash (HMAC with the gateway's OTP key) is kept; it
    can be verified once, and the verification consumed once, by the verifier's token."""

    __tablename__ = "otp_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), index=True)
    salt: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    consumed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    verification_token_hash: Mapped[str | None] = mapped_column(String(64))
    # Fingerprint of the OTP key the code was hashed with (security.otp_key_id).
    key_id: Mapped[str] = mapped_column(String(16), default="")


class SignInFailure(Base):
    """One wrong code for an email. Counted over the last hour for the per-email lockout,
    in the database so that every gateway sharing it sees the same count."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_email_at", "email", "at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    address: Mapped[str] = mapped_column(String(200), default="")


class PosixAttributes:
    """Owner and times a mount shows for an entry (the mode's default differs by kind)."""

    uid: Mapped[int] = mapped_column(BigInteger, default=0)
    gid: Mapped[int] = mapped_column(BigInteger, default=0)
    atime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    ctime_ns: Mapped[int] = mapped_column(BigInteger, default=0)


class Folder(PosixAttributes, Base):
    __tablename__ = "folders"
    __table_args__ = (
        Index(
            "uq_folders_live_name",
            "parent_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL AND parent_id IS NOT NULL"),
            postgresql_where=text("deleted_at IS NULL AND parent_id IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("folders.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    mode: Mapped[int] = mapped_column(Integer, default=0o755)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    original_parent_id: Mapped[str | None] = mapped_column(String(36))


class File(PosixAttributes, Base):
    """A file's inode: content (chunks), size, type and mode, owner, times, version, the
    count of its names and its trash state. Its names live in ``file_names``; a file has
    one or more live names, or (in the trash) exactly one trashed name, the one a restore
    brings back.

    ``folder_id`` and ``name`` are not stored here: they are the name this object was
    reached by (a listing row, a lookup, a file's first name for a lookup by id), set by
    the namespace for replies and events; a file object built for a new file carries the
    name it is created under until the name row is written.
    """

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    mime_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    symlink_target: Mapped[str | None] = mapped_column(Text)
    mode: Mapped[int] = mapped_column(Integer, default=0o644)  # a fifo/socket/device: + S_IFMT
    rdev: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # a device's
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    modified_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # How many live names the file has (its file_names rows; 1 in the trash).
    nlink: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The name this object shows (see above): plain attributes, not columns.
    folder_id = ""
    name = ""
    # Set on the copy delete_file answers with when it removed one name of several.
    name_only = False


class FileName(Base):
    """One name of a file: a (folder, name) naming the inode ``file_id``, as a directory
    entry does on a local filesystem. Hard links are several rows naming one file; no row
    is the file's "own" name. Names are unique among the live entries of a folder, across
    folders and files (the namespace checks that under the folder's lock; the partial
    index holds it among file names).

    The trash: a file goes to the trash only when its last name goes (removing one of
    several names frees nothing, as ``rm`` of a hard link does). Its last name stays
    here with ``deleted_at`` set (the file's own ``deleted_at`` says it is in the trash):
    that is where the trash lists it and what a restore brings back by default (the same
    folder and name, unless that name is taken meanwhile or the caller picks another).
    A file trashed with several names at once (a delete by id) keeps its oldest name.
    """

    __tablename__ = "file_names"
    __table_args__ = (
        Index(
            "uq_file_names_live",
            "folder_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    folder_id: Mapped[str] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"),
                                           index=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Chunk(Base):
    """A content-addressed chunk. ``last_used_at`` protects in-flight uploads from GC."""

    __tablename__ = "chunks"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class FileChunk(Base):
    __tablename__ = "file_chunks"

    file_id: Mapped[str] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    chunk_sha256: Mapped[str] = mapped_column(ForeignKey("chunks.sha256"), index=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)


class UserChunk(Base):
    """Proof that a user has sent a chunk's bytes: they may reference it by hash later.

    This is what lets an interrupted upload resume without resending what already arrived,
    without letting anyone read a chunk just by knowing its hash.
    """

    __tablename__ = "user_chunks"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_sha256: Mapped[str] = mapped_column(
        ForeignKey("chunks.sha256", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class UploadReservation(Base):
    """Quota held by an upload in progress, from its first stored chunk to its commit.

    The bytes an upload has put (or is about to put) on the nodes count against its
    uploader's quota here, so parallel or abandoned uploads can never store more than the
    quota. The row lives in the database so every gateway sees every reservation; a
    gateway that dies mid-upload leaves a row that stops counting at ``expires_at`` (set
    past the time garbage collection takes the upload's chunks; renewed while it runs).
    ``credit`` is what an overwrite will give back (the old version's size), granted to at
    most one live reservation per replaced file.
    """

    __tablename__ = "upload_reservations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    credit: Mapped[int] = mapped_column(BigInteger, default=0)
    replaces_file_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class ParkedChunk(Base):
    """A chunk an aborted upload left on the nodes, still counted against its uploader.

    Kept so the upload can resume by reference; it stops counting the moment garbage
    collection removes the chunk (the row goes with it) or a later upload of the same user
    takes it over (its reservation then counts it instead).
    """

    __tablename__ = "parked_chunks"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_sha256: Mapped[str] = mapped_column(
        ForeignKey("chunks.sha256", ondelete="CASCADE"), primary_key=True, index=True
    )
    size: Mapped[int] = mapped_column(BigInteger)
    parked_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class StorageNode(Base):
    __tablename__ = "storage_nodes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    capacity_bytes: Mapped[int] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    chunk_count: Mapped[int] = mapped_column(BigInteger, default=0)
    cpu_cores: Mapped[int] = mapped_column(Integer, default=1)
    # "online", "offline", "draining", "drained"
    status: Mapped[str] = mapped_column(String(16), default="online")
    last_heartbeat: Mapped[dt.datetime | None] = mapped_column(DateTime)
    offline_since: Mapped[dt.datetime | None] = mapped_column(DateTime)
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # SHA-256 of the key issued at the name's first registration (the node keeps the key):
    # re-registering, heartbeats and leaving need it. NULL for nodes registered before keys
    # existed; they get one at their next registration.
    key_hash: Mapped[str | None] = mapped_column(String(64))
    # The stored chunks' size before compression (used_bytes is what the disk holds).
    logical_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class Replica(Base):
    __tablename__ = "replicas"

    chunk_sha256: Mapped[str] = mapped_column(
        ForeignKey("chunks.sha256", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(
        ForeignKey("storage_nodes.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Share(Base):
    __tablename__ = "shares"
    __table_args__ = (UniqueConstraint("file_id", "shared_with_id", name="uq_share_file_user"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    file_id: Mapped[str] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    shared_with_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    permission: Mapped[str] = mapped_column(String(8))
    share_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class StorageTier(Base):
    __tablename__ = "storage_tiers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    storage_bytes: Mapped[int] = mapped_column(BigInteger)
    price_xaf: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(500), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class Payment(Base):
    """A mobile-money payment. ``credited_at`` is set once, by a guarded UPDATE."""

    __tablename__ = "payments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    tier_id: Mapped[str] = mapped_column(ForeignKey("storage_tiers.id"))
    provider: Mapped[str] = mapped_column(String(20))
    phone_number: Mapped[str] = mapped_column(String(20))
    amount_xaf: Mapped[int] = mapped_column(Integer)
    charged_xaf: Mapped[int] = mapped_column(Integer)
    storage_bytes: Mapped[int] = mapped_column(BigInteger)
    # "pending", "processing", "completed", "failed"
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    external_reference: Mapped[str] = mapped_column(String(64), unique=True)
    transaction_ref: Mapped[str | None] = mapped_column(String(100), index=True)
    operator: Mapped[str | None] = mapped_column(String(40))
    ussd_code: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(String(500), default="")
    demo_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    credited_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(40), index=True)
    timestamp: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    user_id: Mapped[str | None] = mapped_column(String(36))
    details: Mapped[str] = mapped_column(Text, default="{}")


class TrafficMinute(Base):
    """Bytes one gateway received (uploads) and sent (downloads) in one minute.

    Every gateway adds to its own row, so the admin status can tell the cluster's speeds
    over the last minutes whichever gateway answers; rows older than an hour are pruned.
    """

    __tablename__ = "traffic_minutes"

    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
