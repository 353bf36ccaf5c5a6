"""FileService: uploads, downloads, the tree, the trash, shares and the change feed."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.errors import PASSING, CloudError, InvalidArgument, wire_details

from ..accounts import Accounts, Caller
from ..change_feed import ChangeFeed
from ..download_pipeline import DownloadPipeline
from ..events import EventBus
from ..grpc_edge import request_origin, rpc
from ..namespace import Namespace
from ..traffic import TrafficMeter
from ..upload_pipeline import UploadPipeline
from ..wire import entry_response, file_entry, folder_entry, iso

log = logging.getLogger(__name__)

MAX_FOLDER_CHANGES = 256  # ApplyFolderChanges: changes per call


class FileServicer(pb_grpc.FileServiceServicer):
    def __init__(self, accounts: Accounts, namespace: Namespace, uploads: UploadPipeline,
                 downloads: DownloadPipeline, changes: ChangeFeed, events: EventBus,
                 chunk_size: int, traffic: TrafficMeter | None = None) -> None:
        self.accounts = accounts
        # Counts the file bytes clients send and receive, for the admin status's speeds.
        self.traffic = traffic
        self.ns = namespace
        self.uploads = uploads
        self.downloads = downloads
        self.changes = changes
        self.events = events
        self.chunk_size = chunk_size

    def _caller(self, token: str):  # type: ignore[no-untyped-def]
        return self.accounts.authenticate(token)

    # --- data -------------------------------------------------------------------------

    def _received(self, n: int) -> None:
        if self.traffic is not None:
            self.traffic.received(n)

    def _sent(self, n: int) -> None:
        if self.traffic is not None:
            self.traffic.sent(n)

    def _counted(self, requests: Iterator[pb.UploadFileRequest]
                 ) -> Iterator[pb.UploadFileRequest]:
        """The upload's messages, counting the file bytes as they arrive (chunk references
        carry none: those bytes did not travel). Whether the stream's end was a cancel is
        asked by the pipeline just before it commits (``_caller_waits``)."""
        for message in requests:
            if message.chunk_data:
                self._received(len(message.chunk_data))
            yield message

    @rpc
    def UploadFile(self, request_iterator: Iterator[pb.UploadFileRequest],
                   context: grpc.ServicerContext) -> pb.UploadFileResponse:
        result = self.uploads.run(self._counted(request_iterator),
                                  functools.partial(_caller_waits, context))
        f = result.file
        return pb.UploadFileResponse(
            success=True, message="File uploaded successfully", file_id=f.id,
            chunks_stored=result.chunks_stored, chunks_deduplicated=result.chunks_deduplicated,
            entry=file_entry(f))

    @rpc
    def UploadSmallFiles(self, request: pb.UploadSmallFilesRequest,
                         context: grpc.ServicerContext) -> pb.UploadSmallFilesResponse:
        self._received(sum(len(f.data) for f in request.files))
        results = []
        for outcome in self.uploads.run_small(request):
            if isinstance(outcome, CloudError):
                results.append(pb.SmallFileResult(
                    upload=pb.UploadFileResponse(success=False, message=outcome.message),
                    error_code=outcome.code.name, error=wire_details(outcome)))
                continue
            f = outcome.file
            results.append(pb.SmallFileResult(upload=pb.UploadFileResponse(
                success=True, message="File uploaded successfully", file_id=f.id,
                chunks_stored=outcome.chunks_stored,
                chunks_deduplicated=outcome.chunks_deduplicated, entry=file_entry(f))))
        return pb.UploadSmallFilesResponse(results=results)

    @rpc
    def DownloadFile(self, request: pb.DownloadFileRequest, context: grpc.ServicerContext
                     ) -> Iterator[pb.DownloadFileResponse]:
        caller = self._caller(request.session_token)
        plan = self.downloads.plan(caller, request.file_id, request.offset, request.length)
        f = plan.access.file
        yield pb.DownloadFileResponse(file_info=pb.FileInfo(
            file_id=f.id, filename=f.name, file_size=f.size, mime_type=f.mime_type,
            created_at=iso(f.created_at), modified_at=iso(f.modified_at), offset=plan.offset,
            length=plan.length, version=f.version, nlink=f.nlink or 1))
        sent = 0
        for piece in self.downloads.stream(plan):
            sent += len(piece)
            self._sent(len(piece))
            yield pb.DownloadFileResponse(chunk_data=piece)
        if plan.offset == 0 and plan.length == f.size:
            self.events.emit("download", f"{f.name} downloaded ({sent} bytes)", caller.user_id,
                             file_id=f.id, size=sent)

    # --- the tree ---------------------------------------------------------------------

    @rpc
    def ListFiles(self, request: pb.ListFilesRequest, context: grpc.ServicerContext
                  ) -> pb.ListFilesResponse:
        caller = self._caller(request.session_token)
        listing = self.ns.list_folder(caller, request.folder_id, request.path,
                                      request.include_deleted)
        base = listing.paths.get(listing.folder.id, "/")

        def join(name: str) -> str:
            return base.rstrip("/") + "/" + name

        return pb.ListFilesResponse(
            success=True,
            files=[file_entry(f, owner_email=caller.email, path=join(f.name))
                   for f in listing.files],
            folders=[folder_entry(d, path=join(d.name), owner_email=caller.email,
                                  subfolders=listing.subfolders.get(d.id, 0))
                     for d in listing.folders],
            folder=folder_entry(listing.folder, path=base, owner_email=caller.email,
                                subfolders=listing.subfolders.get(listing.folder.id, 0)))

    @rpc
    def StatEntry(self, request: pb.StatEntryRequest, context: grpc.ServicerContext
                  ) -> pb.EntryResponse:
        caller = self._caller(request.session_token)
        entry, permission, path = self.ns.stat(caller, request.entry_id, request.path,
                                               request.parent_folder_id, request.name)
        reply = entry_response(entry, permission=permission, path=path)
        if reply.WhichOneof("entry") == "folder":
            reply.folder.subfolders = self.ns.count_subfolders(entry.id)
        return reply

    @rpc
    def CreateFolder(self, request: pb.CreateFolderRequest, context: grpc.ServicerContext
                     ) -> pb.EntryResponse:
        caller = self._caller(request.session_token)
        folder = self.ns.create_folder(caller, request.parent_folder_id, request.name,
                                       request.mode, request.uid, request.gid, request.exist_ok,
                                       request.folder_id)
        return entry_response(folder)

    @rpc
    def DeleteFolder(self, request: pb.DeleteFolderRequest, context: grpc.ServicerContext
                     ) -> pb.DeleteFileResponse:
        caller = self._caller(request.session_token)
        self.ns.delete_folder(caller, request.folder_id, request.recursive, request.permanent)
        return pb.DeleteFileResponse(
            success=True, message="Folder deleted" if request.permanent
            else "Folder moved to trash")

    @rpc
    def MoveEntry(self, request: pb.MoveEntryRequest, context: grpc.ServicerContext
                  ) -> pb.EntryResponse:
        caller = self._caller(request.session_token)
        entry, path = self.ns.move(caller, request.entry_id, request.new_parent_folder_id,
                                   request.new_name, request.replace_existing,
                                   request.old_parent_folder_id, request.old_name)
        return entry_response(entry, path=path)

    @rpc
    def SetAttributes(self, request: pb.SetAttributesRequest, context: grpc.ServicerContext
                      ) -> pb.EntryResponse:
        caller = self._caller(request.session_token)

        def opt(name: str) -> int | None:
            return getattr(request, name) if request.HasField(name) else None

        entry = self.ns.set_attributes(
            caller, request.entry_id, mode=opt("mode"), uid=opt("uid"), gid=opt("gid"),
            atime_ns=opt("atime_ns"), mtime_ns=opt("mtime_ns"), size=opt("size"))
        return entry_response(entry)

    @rpc
    def LinkFile(self, request: pb.LinkFileRequest, context: grpc.ServicerContext
                 ) -> pb.EntryResponse:
        caller = self._caller(request.session_token)
        entry, path = self.ns.link_file(caller, request.file_id, request.parent_folder_id,
                                        request.name)
        return entry_response(entry, path=path)

    @rpc
    def CreateSymlink(self, request: pb.CreateSymlinkRequest, context: grpc.ServicerContext
                      ) -> pb.EntryResponse:
        caller = self._caller(request.session_token)
        link = self.ns.create_symlink(caller, request.parent_folder_id, request.name,
                                      request.target, request.uid, request.gid)
        return entry_response(link)

    @rpc
    def DeleteFile(self, request: pb.DeleteFileRequest, context: grpc.ServicerContext
                   ) -> pb.DeleteFileResponse:
        caller = self._caller(request.session_token)
        name_only = self.ns.delete_file(caller, request.file_id, request.permanent,
                                        request.parent_folder_id, request.name).name_only
        if name_only:
            return pb.DeleteFileResponse(success=True, message="Name removed; the file keeps "
                                         "its other names")
        return pb.DeleteFileResponse(
            success=True, message="File permanently deleted" if request.permanent
            else "File moved to trash")

    @rpc
    def DeleteFiles(self, request: pb.DeleteFilesRequest, context: grpc.ServicerContext
                    ) -> pb.DeleteFilesResponse:
        caller = self._caller(request.session_token)
        out = pb.DeleteFilesResponse()
        for fid, error in self.ns.delete_files(caller, list(request.file_ids),
                                               request.permanent):
            if error is None:
                out.results.append(pb.DeleteFileResult(file_id=fid, success=True))
                out.deleted += 1
            else:
                out.results.append(pb.DeleteFileResult(
                    file_id=fid, error_code=error.code.name, error_message=wire_details(error)))
        return out

    @rpc
    def ApplyFolderChanges(self, request: pb.ApplyFolderChangesRequest,
                           context: grpc.ServicerContext) -> pb.ApplyFolderChangesResponse:
        """A mount's queued mkdirs and folder moves, in order, each on its own: the same
        checks and transactions as CreateFolder and MoveEntry, one call for the batch."""
        caller = self._caller(request.session_token)
        if len(request.changes) > MAX_FOLDER_CHANGES:
            raise InvalidArgument(f"at most {MAX_FOLDER_CHANGES} folder changes per call")
        out = pb.ApplyFolderChangesResponse()
        for change in request.changes:
            try:
                out.results.append(pb.FolderChangeResult(entry=self._folder_change(caller,
                                                                                   change)))
            except CloudError as exc:
                out.results.append(pb.FolderChangeResult(
                    error_code=exc.code.name, error_message=wire_details(exc)))
                if isinstance(exc, PASSING):
                    break  # the rest waits for the caller's retry, in order
            except Exception:  # noqa: BLE001 - the changes before it stand: say where it ended
                log.exception("folder change %d of %d failed", len(out.results) + 1,
                              len(request.changes))
                out.results.append(pb.FolderChangeResult(
                    error_code=grpc.StatusCode.INTERNAL.name,
                    error_message="internal error"))
                break
        return out

    def _folder_change(self, caller: Caller, change: pb.FolderChange) -> pb.EntryResponse:
        kind = change.WhichOneof("change")
        if kind == "create":
            c = change.create
            return entry_response(self.ns.create_folder(
                caller, c.parent_folder_id, c.name, c.mode, c.uid, c.gid, c.exist_ok,
                c.folder_id))
        if kind == "move":
            m = change.move
            entry, path = self.ns.move(caller, m.entry_id, m.new_parent_folder_id, m.new_name,
                                       m.replace_existing, m.old_parent_folder_id, m.old_name)
            return entry_response(entry, path=path)
        raise InvalidArgument("a folder change must be a create or a move")

    # --- trash ------------------------------------------------------------------------

    @rpc
    def RestoreFile(self, request: pb.RestoreFileRequest, context: grpc.ServicerContext
                    ) -> pb.EntryResponse:
        caller = self._caller(request.session_token)
        entry, path = self.ns.restore(caller, request.file_id, request.new_parent_folder_id,
                                      request.new_name)
        return entry_response(entry, path=path)

    @rpc
    def ListTrash(self, request: pb.ListTrashRequest, context: grpc.ServicerContext
                  ) -> pb.ListFilesResponse:
        caller = self._caller(request.session_token)
        folders, files, paths = self.ns.list_trash(caller)
        out = pb.ListFilesResponse(success=True)
        for f in files:
            e = file_entry(f, owner_email=caller.email)
            e.original_path = paths.get(f.id, "")
            out.files.append(e)
        for d in folders:
            out.folders.append(folder_entry(d, path=paths.get(d.id, ""),
                                            owner_email=caller.email))
        return out

    @rpc
    def EmptyTrash(self, request: pb.EmptyTrashRequest, context: grpc.ServicerContext
                   ) -> pb.EmptyTrashResponse:
        caller = self._caller(request.session_token)
        removed, freed = self.ns.empty_trash(caller, list(request.entry_ids))
        return pb.EmptyTrashResponse(success=True, message=f"{removed} files removed",
                                     files_removed=removed, bytes_freed=freed)

    # --- shares -----------------------------------------------------------------------

    @rpc
    def ShareFile(self, request: pb.ShareFileRequest, context: grpc.ServicerContext
                  ) -> pb.ShareFileResponse:
        caller = self._caller(request.session_token)
        share = self.ns.share(caller, request.file_id, request.share_with_email,
                              request.permission)
        return pb.ShareFileResponse(
            success=True, message=f"File shared with {request.share_with_email} "
            f"({share.permission})", share_token=share.share_token)

    @rpc
    def ListShares(self, request: pb.ListSharesRequest, context: grpc.ServicerContext
                   ) -> pb.ListSharesResponse:
        caller = self._caller(request.session_token)
        return pb.ListSharesResponse(success=True, shares=[
            pb.ShareEntry(share_id=sh.id, file_id=sh.file_id, filename=name,
                          owner_email=caller.email, shared_with_email=email,
                          permission=sh.permission, created_at=iso(sh.created_at),
                          share_token=sh.share_token)
            for sh, name, email in self.ns.list_shares(caller, request.file_id)])

    @rpc
    def RevokeShare(self, request: pb.RevokeShareRequest, context: grpc.ServicerContext
                    ) -> pb.RevokeShareResponse:
        caller = self._caller(request.session_token)
        self.ns.revoke_share(caller, request.share_id, request.file_id,
                             request.shared_with_email)
        return pb.RevokeShareResponse(success=True, message="Share revoked")

    @rpc
    def ListSharedWithMe(self, request: pb.ListSharedWithMeRequest,
                         context: grpc.ServicerContext) -> pb.ListFilesResponse:
        caller = self._caller(request.session_token)
        return pb.ListFilesResponse(success=True, files=[
            file_entry(f, permission=perm, owner_email=email, path="/Shared/" + f.name)
            for f, perm, email in self.ns.shared_with_me(caller)])

    # --- chunks -----------------------------------------------------------------------

    @rpc
    def FindChunks(self, request: pb.FindChunksRequest, context: grpc.ServicerContext
                   ) -> pb.FindChunksResponse:
        caller = self._caller(request.session_token)
        if len(request.sha256) > 100_000:
            raise InvalidArgument("at most 100000 hashes per call")
        present = self.ns.visible_chunks(caller, list(request.sha256))
        # only chunks with every promised live copy: a short one must travel again
        full = self.uploads.store.fully_replicated(present)
        return pb.FindChunksResponse(present=[h for h in present if h in full],
                                     chunk_size=self.chunk_size)

    @rpc
    def PrepareChunkWrites(self, request: pb.PrepareChunkWritesRequest,
                           context: grpc.ServicerContext) -> pb.PrepareChunkWritesResponse:
        caller = self._caller(request.session_token)
        return self.uploads.direct.prepare(caller, list(request.chunks), request.upload_id)

    @rpc
    def GetFileChunks(self, request: pb.GetFileChunksRequest, context: grpc.ServicerContext
                      ) -> pb.GetFileChunksResponse:
        caller = self._caller(request.session_token)
        plan = self.downloads.read_plan(caller, request.file_id, request.with_sources)
        return pb.GetFileChunksResponse(
            chunks=[pb.ChunkRef(sha256=s.sha256, size=s.size) for s in plan.spans],
            chunk_size=self.chunk_size, version=plan.file.version,
            sources=[pb.ChunkSource(sha256=sha, addresses=addresses, read_token=token)
                     for sha, addresses, token in plan.sources],
            sources_expire_at=plan.expires_at, node_ca_pem=plan.node_ca_pem)

    @rpc
    def DownloadSmallFiles(self, request: pb.DownloadSmallFilesRequest,
                           context: grpc.ServicerContext) -> Iterator[pb.SmallFileContent]:
        caller = self._caller(request.session_token)
        if len(request.file_ids) > 10_000:
            raise InvalidArgument("at most 10000 files per call")
        limit = request.max_file_size or 1024 * 1024
        if limit > 16 * 1024 * 1024:
            raise InvalidArgument("max_file_size is at most 16 MiB")
        for fid, version, data, error in self.downloads.small_files(
                caller, list(request.file_ids), limit):
            self._sent(len(data))
            yield pb.SmallFileContent(file_id=fid, version=version, data=data, error=error)

    # --- change feed ------------------------------------------------------------------

    @rpc
    def WatchChanges(self, request: pb.WatchChangesRequest, context: grpc.ServicerContext
                     ) -> Iterator[pb.ChangeEvent]:
        caller = self._caller(request.session_token)
        origin = request_origin(context)
        sub = self.changes.subscribe(caller.user_id, origin)
        hello = pb.ChangeEvent(kind="hello", echo_free=bool(origin), client_folder_ids=True)
        try:
            yield hello
            said = time.monotonic()
            # ``ended``: changes were missed (see ChangeFeed.end_streams); ending the stream
            # makes the client re-subscribe and drop its caches.
            while context.is_active() and not sub.ended:
                change = sub.get(timeout=1.0)
                if change is None:
                    if time.monotonic() - said >= self.changes.keepalive_s:
                        # Silent too long: "hello" again (a subscriber already live only
                        # notes it), so a proxy in between does not cut the stream as idle.
                        yield hello
                        said = time.monotonic()
                    continue
                said = time.monotonic()
                yield pb.ChangeEvent(
                    kind=change.kind, entry_id=change.entry_id,
                    parent_folder_id=change.parent_folder_id,
                    old_parent_folder_id=change.old_parent_folder_id, name=change.name,
                    old_name=change.old_name, is_folder=change.is_folder,
                    timestamp=change.timestamp)
        finally:
            sub.close()


def _caller_waits(context: grpc.ServicerContext, wait_s: float) -> bool:
    """Whether the caller is still there, watching up to ``wait_s`` seconds for a cancel."""
    deadline = time.monotonic() + wait_s
    while context.is_active():
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.005)
    return False
