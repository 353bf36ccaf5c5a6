"""A small in-memory gateway with real behaviour, for testing the client library and the CLI.

It implements the AuthService, FileService and StorageService calls the clients use, with
the semantics the wire contract describes (OTP -> verification token -> session + refresh
token, folders and paths, soft delete and trash, chunked uploads with ``chunk_ref``, ranged
downloads), plus knobs to inject failures and counters to measure what travelled. It is not
the gateway: no database, no nodes, one process.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto import errors

OTP_CODE = "123456"
MiB = 1024 * 1024


@dataclass
class Node:
    id: str
    owner: str
    name: str
    parent_id: str
    is_folder: bool
    size: int = 0
    mime: str = ""
    chunks: list[tuple[str, int]] = field(default_factory=list)
    created: str = ""
    modified: str = ""
    mtime_ns: int = 0
    mode: int = 0
    version: int = 1
    deleted: bool = False
    deleted_at: str = ""
    original_path: str = ""
    symlink_target: str = ""


@dataclass
class User:
    id: str
    email: str
    name: str
    allocated: int = 1024 * MiB


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class FakeGateway(
    pb_grpc.AuthServiceServicer, pb_grpc.FileServiceServicer, pb_grpc.StorageServiceServicer
):
    def __init__(self, chunk_size: int = 256 * 1024) -> None:
        self.chunk_size = chunk_size
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}  # email -> user
        self.sessions: dict[str, tuple[str, float]] = {}  # token -> (email, expires)
        self.refresh_tokens: dict[str, str] = {}  # token -> email
        self.verified: dict[str, list[str]] = defaultdict(list)  # email -> tokens
        self.otps: dict[str, str] = {}
        self.otp_cooldown_s = 0.0  # as the gateway's OTP_RESEND_COOLDOWN_S (0: none)
        self.otp_sent_at: dict[str, float] = {}
        self.nodes: dict[str, Node] = {}
        self.chunks: dict[str, bytes] = {}
        self.shares: dict[str, tuple[str, str, str, str]] = {}  # id -> (file, owner, to, perm)
        self.calls: Counter[str] = Counter()
        self.inject: dict[str, list[grpc.StatusCode]] = defaultdict(list)
        # typed errors the gateway itself answers (abort_with: marked as answered), where
        # ``inject`` stands for failures on the way (no server's mark)
        self.answers: dict[str, list[errors.CloudError]] = defaultdict(list)
        self.download_cut_after: int | None = None  # abort a download after N data messages
        self.upload_cut_after: int | None = None  # abort an upload after N bytes received
        self.upload_log: list[dict[str, int]] = []
        self.session_ttl = 3600.0
        self.supports_chunk_refs = True

    # -- plumbing --------------------------------------------------------------------------

    def _enter(self, name: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls[name] += 1
            if self.inject.get(name):
                code = self.inject[name].pop(0)
                context.abort(code, f"injected {code.name}")
            answer = self.answers[name].pop(0) if self.answers.get(name) else None
        if answer is not None:
            errors.abort_with(context, answer)

    def _fail(self, context: grpc.ServicerContext, error: errors.CloudError) -> None:
        errors.abort_with(context, error)

    def _user(self, token: str, context: grpc.ServicerContext) -> User:
        with self.lock:
            found = self.sessions.get(token)
            if not found or found[1] < time.time():
                self._fail(context, errors.Unauthenticated("invalid or expired session"))
            return self.users[found[0]]

    def _new_session(self, email: str, device: str) -> tuple[str, str, int]:
        token = secrets.token_hex(16)
        expires = time.time() + self.session_ttl
        self.sessions[token] = (email, expires)
        refresh = ""
        if device:
            refresh = secrets.token_hex(16)
            self.refresh_tokens[refresh] = email
        return token, refresh, int(expires)

    def expire_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    def path_of(self, node: Node) -> str:
        parts = [node.name]
        parent = node.parent_id
        while parent:
            p = self.nodes[parent]
            parts.append(p.name)
            parent = p.parent_id
        return "/" + "/".join(reversed(parts))

    def _children(self, owner: str, parent_id: str, deleted: bool = False) -> list[Node]:
        return [
            n
            for n in self.nodes.values()
            if n.owner == owner and n.parent_id == parent_id and (deleted or not n.deleted)
        ]

    def _child(self, owner: str, parent_id: str, name: str) -> Node | None:
        for n in self._children(owner, parent_id):
            if n.name == name:
                return n
        return None

    def _resolve(self, owner: str, path: str) -> Node | None:
        parent = ""
        node = None
        for part in [p for p in path.split("/") if p]:
            node = self._child(owner, parent, part)
            if node is None:
                return None
            parent = node.id
        return node

    def _get(self, user: User, entry_id: str, context: grpc.ServicerContext) -> Node:
        node = self.nodes.get(entry_id)
        if node is None or not self._may_read(user, node):
            self._fail(context, errors.NotFound(f"no such entry: {entry_id}"))
        return node

    def _may_read(self, user: User, node: Node) -> bool:
        if node.owner == user.email:
            return True
        return any(f == node.id and to == user.email for f, _o, to, _p in self.shares.values())

    def _file_entry(self, n: Node) -> pb.FileEntry:
        return pb.FileEntry(
            file_id=n.id,
            filename=n.name,
            file_size=n.size,
            mime_type=n.mime,
            created_at=n.created,
            modified_at=n.modified,
            is_deleted=n.deleted,
            parent_folder_id=n.parent_id,
            owner_email=n.owner,
            permission="owner",
            mode=n.mode or 0o644,
            mtime_ns=n.mtime_ns,
            version=n.version,
            deleted_at=n.deleted_at,
            original_path=n.original_path,
            path=self.path_of(n),
            symlink_target=n.symlink_target,
        )

    def _folder_entry(self, n: Node) -> pb.FolderEntry:
        return pb.FolderEntry(
            folder_id=n.id,
            name=n.name,
            parent_folder_id=n.parent_id,
            created_at=n.created,
            is_deleted=n.deleted,
            mode=n.mode or 0o755,
            mtime_ns=n.mtime_ns,
            path=self.path_of(n),
            owner_email=n.owner,
            permission="owner",
        )

    def _entry(self, n: Node) -> pb.EntryResponse:
        if n.is_folder:
            return pb.EntryResponse(success=True, folder=self._folder_entry(n))
        return pb.EntryResponse(success=True, file=self._file_entry(n))

    def _folder_id(self, user: User, folder_id: str, context: grpc.ServicerContext) -> str:
        if folder_id in ("", "/", "root"):
            return ""
        node = self._get(user, folder_id, context)
        if not node.is_folder or node.deleted:
            self._fail(context, errors.NotFound(f"no such folder: {folder_id}"))
        return node.id

    # -- auth ------------------------------------------------------------------------------

    def SendOTP(self, request, context):
        self._enter("SendOTP", context)
        if "@" not in request.email:
            self._fail(context, errors.InvalidArgument("invalid email address"))
        wait = self.otp_sent_at.get(request.email, -1e9) + self.otp_cooldown_s - time.time()
        if wait > 0:  # the gateway's words (server/accounts.py)
            self._fail(context, errors.RateLimited(
                f"a code was just sent; try again in {int(wait) + 1} s"))
        self.otps[request.email] = OTP_CODE
        self.otp_sent_at[request.email] = time.time()
        return pb.SendOTPResponse(success=True, message="OTP sent")

    def VerifyOTP(self, request, context):
        self._enter("VerifyOTP", context)
        if self.otps.get(request.email) != request.otp:
            self._fail(context, errors.InvalidArgument("invalid code"))
        del self.otps[request.email]
        token = secrets.token_hex(8)
        self.verified[request.email].append(token)
        return pb.VerifyOTPResponse(success=True, message="verified", verification_token=token)

    def _consume_verification(self, email: str, token: str, context) -> None:
        tokens = self.verified.get(email, [])
        if not token:  # as the real gateway: the token VerifyOTP answered is required
            self._fail(context, errors.InvalidArgument("verification_token is required"))
        if token in tokens:
            tokens.remove(token)
        else:
            self._fail(context, errors.Unauthenticated("verify a code first"))

    def Enroll(self, request, context):
        self._enter("Enroll", context)
        with self.lock:
            if request.email in self.users:
                self._fail(context, errors.AlreadyExists("already enrolled"))
            self._consume_verification(request.email, request.verification_token, context)
            user = User(str(uuid.uuid4()), request.email, request.full_name)
            self.users[request.email] = user
            token, refresh, expires = self._new_session(request.email, request.device_name)
        return pb.EnrollResponse(
            success=True,
            message=f"Enrolled {request.full_name}",
            session_token=token,
            user_id=user.id,
            refresh_token=refresh,
            expires_at=expires,
            storage_allocated=user.allocated,
        )

    def Login(self, request, context):
        self._enter("Login", context)
        with self.lock:
            user = self.users.get(request.email)
            if user is None:
                self._fail(context, errors.NotFound("no such user"))
            self._consume_verification(request.email, request.verification_token, context)
            token, refresh, expires = self._new_session(request.email, request.device_name)
        return pb.LoginResponse(
            success=True,
            session_token=token,
            user_id=user.id,
            refresh_token=refresh,
            expires_at=expires,
        )

    def RefreshSession(self, request, context):
        self._enter("RefreshSession", context)
        with self.lock:
            email = self.refresh_tokens.pop(request.refresh_token, None)
            if email is None:
                self._fail(context, errors.Unauthenticated("invalid refresh token"))
            token, refresh, expires = self._new_session(email, "device")
        return pb.LoginResponse(
            success=True,
            session_token=token,
            user_id=self.users[email].id,
            refresh_token=refresh,
            expires_at=expires,
        )

    def Logout(self, request, context):
        self._enter("Logout", context)
        with self.lock:
            self.sessions.pop(request.session_token, None)
            self.refresh_tokens.pop(request.refresh_token, None)
        return pb.LogoutResponse(success=True, message="signed out")

    def WhoAmI(self, request, context):
        self._enter("WhoAmI", context)
        user = self._user(request.session_token, context)
        return pb.WhoAmIResponse(
            success=True,
            user_id=user.id,
            email=user.email,
            full_name=user.name,
            session_expires_at=int(self.sessions[request.session_token][1]),
        )

    # -- storage ---------------------------------------------------------------------------

    def _used(self, user: User) -> int:
        return sum(n.size for n in self.nodes.values() if n.owner == user.email)

    def GetStorageInfo(self, request, context):
        self._enter("GetStorageInfo", context)
        user = self._user(request.session_token, context)
        used = self._used(user)
        return pb.StorageInfoResponse(
            success=True,
            allocated_bytes=user.allocated,
            used_bytes=used,
            available_bytes=user.allocated - used,
            usage_percentage=100.0 * used / user.allocated,
            chunk_size=self.chunk_size,
            file_count=sum(
                1 for n in self.nodes.values() if n.owner == user.email and not n.is_folder
            ),
        )

    # -- files -----------------------------------------------------------------------------

    def UploadFile(self, request_iterator, context):
        self._enter("UploadFile", context)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("data") != "metadata":
            self._fail(context, errors.InvalidArgument("metadata must come first"))
        meta = first.metadata
        user = self._user(meta.session_token, context)
        with self.lock:
            parent = self._folder_id(user, meta.parent_folder_id, context)
            existing = self._child(user.email, parent, meta.filename)
            if meta.file_size > user.allocated - self._used(user) + (
                existing.size if existing else 0
            ):
                self._fail(context, errors.QuotaExceeded("storage quota exceeded"))
        log = {"bytes": 0, "refs": 0, "ref_bytes": 0, "messages": 0, "stored": 0, "dedup": 0}
        self.upload_log.append(log)
        buffer = bytearray()
        manifest: list[tuple[str, int]] = []

        def cut(data: bytes) -> None:
            sha = hashlib.sha256(data).hexdigest()
            with self.lock:
                if sha in self.chunks:
                    log["dedup"] += 1
                else:
                    self.chunks[sha] = bytes(data)  # stored at once: an orphan if we fail
                    log["stored"] += 1
            manifest.append((sha, len(data)))

        for message in request_iterator:
            log["messages"] += 1
            kind = message.WhichOneof("data")
            if kind == "chunk_data":
                log["bytes"] += len(message.chunk_data)
                buffer.extend(message.chunk_data)
                while len(buffer) >= self.chunk_size:
                    cut(bytes(buffer[: self.chunk_size]))
                    del buffer[: self.chunk_size]
                if self.upload_cut_after is not None and log["bytes"] >= self.upload_cut_after:
                    self.upload_cut_after = None
                    context.abort(grpc.StatusCode.UNAVAILABLE, "injected: connection lost")
            elif kind == "chunk_ref":
                if not self.supports_chunk_refs:
                    self._fail(context, errors.InvalidArgument("chunk_ref not supported"))
                ref = message.chunk_ref
                if buffer:
                    self._fail(context, errors.InvalidArgument("chunk_ref off a chunk boundary"))
                if ref.sha256 not in self.chunks or len(self.chunks[ref.sha256]) != ref.size:
                    self._fail(context, errors.FailedPrecondition("unknown chunk"))
                log["refs"] += 1
                log["ref_bytes"] += ref.size
                manifest.append((ref.sha256, ref.size))
            else:
                self._fail(context, errors.InvalidArgument("metadata twice"))
        if buffer:
            cut(bytes(buffer))
        total = sum(size for _, size in manifest)
        if total != meta.file_size:
            self._fail(
                context,
                errors.InvalidArgument(f"announced {meta.file_size} bytes, got {total}"),
            )
        with self.lock:
            existing = self._child(user.email, parent, meta.filename)
            if meta.overwrite_file_id:
                node = self._get(user, meta.overwrite_file_id, context)
            elif existing is not None:
                if not meta.replace_existing or existing.is_folder:
                    self._fail(context, errors.AlreadyExists(f"{meta.filename} exists"))
                node = existing
            else:
                node = Node(str(uuid.uuid4()), user.email, meta.filename, parent, False)
                node.created = _now()
                node.version = 0
                self.nodes[node.id] = node
            node.size = total
            node.chunks = manifest
            node.mime = meta.mime_type
            node.modified = _now()
            node.mtime_ns = meta.mtime_ns or time.time_ns()
            node.mode = meta.mode
            node.version += 1
        return pb.UploadFileResponse(
            success=True,
            message="stored",
            file_id=node.id,
            chunks_stored=log["stored"],
            chunks_deduplicated=log["dedup"] + log["refs"],
            entry=self._file_entry(node),
        )

    def DownloadFile(self, request, context):
        self._enter("DownloadFile", context)
        user = self._user(request.session_token, context)
        node = self._get(user, request.file_id, context)
        if node.is_folder:
            self._fail(context, errors.InvalidArgument("is a folder"))
        start = min(request.offset, node.size)
        end = node.size if not request.length else min(node.size, start + request.length)
        yield pb.DownloadFileResponse(
            file_info=pb.FileInfo(
                file_id=node.id,
                filename=node.name,
                file_size=node.size,
                mime_type=node.mime,
                modified_at=node.modified,
                offset=start,
                length=end - start,
                version=node.version,
            )
        )
        data = b"".join(self.chunks[sha] for sha, _ in node.chunks)[start:end]
        sent = 0
        for i in range(0, len(data), 64 * 1024):
            if self.download_cut_after is not None and sent >= self.download_cut_after:
                self.download_cut_after = None
                context.abort(grpc.StatusCode.UNAVAILABLE, "injected cut")
            yield pb.DownloadFileResponse(chunk_data=data[i : i + 64 * 1024])
            sent += 1

    def ListFiles(self, request, context):
        self._enter("ListFiles", context)
        user = self._user(request.session_token, context)
        with self.lock:
            folder_id = request.folder_id
            folder = None
            if not folder_id and request.path not in ("", "/"):
                folder = self._resolve(user.email, request.path)
                if folder is None or not folder.is_folder:
                    self._fail(context, errors.NotFound(f"no such folder: {request.path}"))
                folder_id = folder.id
            folder_id = self._folder_id(user, folder_id, context)
            kids = self._children(user.email, folder_id, request.include_deleted)
            response = pb.ListFilesResponse(success=True)
            for n in sorted(kids, key=lambda n: n.name):
                if n.is_folder:
                    response.folders.append(self._folder_entry(n))
                else:
                    response.files.append(self._file_entry(n))
            if folder_id:
                response.folder.CopyFrom(self._folder_entry(self.nodes[folder_id]))
            return response

    def StatEntry(self, request, context):
        self._enter("StatEntry", context)
        user = self._user(request.session_token, context)
        with self.lock:
            if request.entry_id:
                node = self._get(user, request.entry_id, context)
            elif request.name:
                parent = self._folder_id(user, request.parent_folder_id, context)
                node = self._child(user.email, parent, request.name)
            else:
                node = self._resolve(user.email, request.path)
            if node is None:
                self._fail(context, errors.NotFound("no such file or folder"))
            return self._entry(node)

    def CreateFolder(self, request, context):
        self._enter("CreateFolder", context)
        user = self._user(request.session_token, context)
        with self.lock:
            parent = self._folder_id(user, request.parent_folder_id, context)
            if not request.name or "/" in request.name:
                self._fail(context, errors.InvalidArgument("bad folder name"))
            existing = self._child(user.email, parent, request.name)
            if existing is not None:
                if request.exist_ok and existing.is_folder:
                    return self._entry(existing)
                self._fail(context, errors.AlreadyExists(f"{request.name} exists"))
            node = Node(str(uuid.uuid4()), user.email, request.name, parent, True, created=_now())
            self.nodes[node.id] = node
            return self._entry(node)

    def _soft_delete(self, node: Node, permanent: bool) -> None:
        for kid in [n for n in self.nodes.values() if n.parent_id == node.id]:
            self._soft_delete(kid, permanent)
        if permanent:
            del self.nodes[node.id]
        else:
            node.original_path = self.path_of(node)
            node.deleted = True
            node.deleted_at = _now()

    def DeleteFile(self, request, context):
        self._enter("DeleteFile", context)
        user = self._user(request.session_token, context)
        with self.lock:
            node = self._get(user, request.file_id, context)
            if node.is_folder:
                self._fail(context, errors.InvalidArgument("is a folder"))
            self._soft_delete(node, request.permanent)
        return pb.DeleteFileResponse(success=True, message="deleted")

    def DeleteFolder(self, request, context):
        self._enter("DeleteFolder", context)
        user = self._user(request.session_token, context)
        with self.lock:
            node = self._get(user, request.folder_id, context)
            if not node.is_folder:
                self._fail(context, errors.InvalidArgument("not a folder"))
            if self._children(user.email, node.id) and not request.recursive:
                self._fail(context, errors.FailedPrecondition("folder not empty"))
            self._soft_delete(node, request.permanent)
        return pb.DeleteFileResponse(success=True, message="deleted")

    def MoveEntry(self, request, context):
        self._enter("MoveEntry", context)
        user = self._user(request.session_token, context)
        with self.lock:
            node = self._get(user, request.entry_id, context)
            parent = node.parent_id
            if request.new_parent_folder_id:
                parent = self._folder_id(user, request.new_parent_folder_id, context)
            name = request.new_name or node.name
            clash = self._child(user.email, parent, name)
            if clash is not None and clash.id != node.id:
                if not request.replace_existing or clash.is_folder:
                    self._fail(context, errors.AlreadyExists(f"{name} exists"))
                del self.nodes[clash.id]
            node.parent_id = parent
            node.name = name
            return self._entry(node)

    def ListTrash(self, request, context):
        self._enter("ListTrash", context)
        user = self._user(request.session_token, context)
        response = pb.ListFilesResponse(success=True)
        with self.lock:
            for n in self.nodes.values():
                if n.owner != user.email or not n.deleted:
                    continue
                parent = self.nodes.get(n.parent_id)
                if parent is not None and parent.deleted:
                    continue  # shown through its deleted folder
                if n.is_folder:
                    response.folders.append(self._folder_entry(n))
                else:
                    response.files.append(self._file_entry(n))
        return response

    def RestoreFile(self, request, context):
        self._enter("RestoreFile", context)
        user = self._user(request.session_token, context)
        with self.lock:
            node = self._get(user, request.file_id, context)
            if not node.deleted:
                self._fail(context, errors.FailedPrecondition("not in the trash"))

            def undelete(n: Node) -> None:
                n.deleted = False
                n.deleted_at = ""
                for kid in [k for k in self.nodes.values() if k.parent_id == n.id]:
                    undelete(kid)

            undelete(node)
            if request.new_name:
                node.name = request.new_name
            return self._entry(node)

    def EmptyTrash(self, request, context):
        self._enter("EmptyTrash", context)
        user = self._user(request.session_token, context)
        with self.lock:
            doomed = [
                n
                for n in self.nodes.values()
                if n.owner == user.email
                and n.deleted
                and (not request.entry_ids or n.id in request.entry_ids)
            ]
            freed = sum(n.size for n in doomed)
            for n in doomed:
                self.nodes.pop(n.id, None)
        return pb.EmptyTrashResponse(
            success=True, files_removed=sum(1 for n in doomed if not n.is_folder), bytes_freed=freed
        )

    def ShareFile(self, request, context):
        self._enter("ShareFile", context)
        user = self._user(request.session_token, context)
        with self.lock:
            node = self._get(user, request.file_id, context)
            if request.share_with_email not in self.users:
                self._fail(context, errors.NotFound("no such user"))
            if request.permission not in ("read", "write"):
                self._fail(context, errors.InvalidArgument("permission must be read or write"))
            share_id = str(uuid.uuid4())
            self.shares[share_id] = (
                node.id,
                user.email,
                request.share_with_email,
                request.permission,
            )
        return pb.ShareFileResponse(success=True, message="shared", share_token=share_id)

    def ListShares(self, request, context):
        self._enter("ListShares", context)
        user = self._user(request.session_token, context)
        response = pb.ListSharesResponse(success=True)
        for share_id, (file_id, owner, to, perm) in self.shares.items():
            if owner == user.email and (not request.file_id or request.file_id == file_id):
                response.shares.append(
                    pb.ShareEntry(
                        share_id=share_id,
                        file_id=file_id,
                        filename=self.nodes[file_id].name,
                        owner_email=owner,
                        shared_with_email=to,
                        permission=perm,
                    )
                )
        return response

    def RevokeShare(self, request, context):
        self._enter("RevokeShare", context)
        user = self._user(request.session_token, context)
        share = self.shares.get(request.share_id)
        if share is None or share[1] != user.email:
            self._fail(context, errors.NotFound("no such share"))
        del self.shares[request.share_id]
        return pb.RevokeShareResponse(success=True, message="revoked")

    def ListSharedWithMe(self, request, context):
        self._enter("ListSharedWithMe", context)
        user = self._user(request.session_token, context)
        response = pb.ListFilesResponse(success=True)
        for file_id, _owner, to, _perm in self.shares.values():
            if to == user.email and file_id in self.nodes:
                response.files.append(self._file_entry(self.nodes[file_id]))
        return response

    def FindChunks(self, request, context):
        self._enter("FindChunks", context)
        self._user(request.session_token, context)
        with self.lock:
            present = [h for h in request.sha256 if h in self.chunks]
        return pb.FindChunksResponse(present=present, chunk_size=self.chunk_size)

    def GetFileChunks(self, request, context):
        self._enter("GetFileChunks", context)
        user = self._user(request.session_token, context)
        node = self._get(user, request.file_id, context)
        return pb.GetFileChunksResponse(
            chunks=[pb.ChunkRef(sha256=h, size=s) for h, s in node.chunks],
            chunk_size=self.chunk_size,
            version=node.version,
        )


class Running:
    """A fake gateway serving on 127.0.0.1 (port chosen by the OS)."""

    def __init__(self, chunk_size: int = 256 * 1024, credentials: object = None) -> None:
        self.fake = FakeGateway(chunk_size)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16),
            options=[
                ("grpc.max_receive_message_length", 64 * MiB),
                ("grpc.max_send_message_length", 64 * MiB),
            ],
        )
        pb_grpc.add_AuthServiceServicer_to_server(self.fake, self.server)
        pb_grpc.add_FileServiceServicer_to_server(self.fake, self.server)
        pb_grpc.add_StorageServiceServicer_to_server(self.fake, self.server)
        if credentials is not None:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)  # type: ignore[arg-type]
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait(5)
