"""The seed's file client as ``cloudgrpc`` subcommands, for machines that cannot mount.

upload, download, ls, rm, mkdir, mv, share and trash over the same ``CloudClient`` the mount
uses. Uploads go through ``known_chunks``: chunks the gateway already holds travel as
references, which is what makes a re-run of an interrupted upload send only the rest.
Small files of a tree go up in groups, one UploadSmallFiles call each.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient, SmallUpload
from cloudgrpc_proto.transfer import UploadStats

from .context import Context, UsageError
from .output import Progress, format_time, human_size
from .remote import SHARED, Entry, looks_like_id, normalize, split_listing

# Files up to BATCH_FILE go up in groups (UploadSmallFiles): at most BATCH_COUNT files and
# BATCH_BYTES per call, so a tree of small files costs a call per group, not per file.
BATCH_FILE = 1024 * 1024
BATCH_COUNT = 100
BATCH_BYTES = 8 * 1024 * 1024


class Cancelled(Exception):
    """The user pressed Ctrl-C: transfers in flight stop at their next message."""


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, errors.CloudError):
        return exc.exit_code
    if isinstance(exc, FileNotFoundError):
        return errors.NotFound.exit_code
    if isinstance(exc, PermissionError):
        return errors.PermissionDenied.exit_code
    if isinstance(exc, UsageError):
        return UsageError.exit_code
    return 1


def describe_error(exc: BaseException) -> str:
    """One line for the user; the kinds a user must tell apart say which they are."""
    if isinstance(exc, errors.ClusterUnavailable):
        return f"the gateway answered but the cluster cannot serve this now: {exc.message}"
    if isinstance(exc, errors.DataLoss):
        return f"data unreadable: {exc.message}"
    if isinstance(exc, errors.CloudError):
        return exc.message
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__


_SIZE_SUFFIXES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """'10M' -> 10485760: sizes as rclone and curl take them (powers of 1024)."""
    raw = text.strip().lower().removesuffix("b").removesuffix("i")
    number, suffix = (raw[:-1], raw[-1]) if raw and raw[-1] in "kmgt" else (raw, "")
    try:
        value = float(number) * _SIZE_SUFFIXES[suffix]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512K, 10M)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a rate must be positive")
    return int(value)


class RateLimit:
    """Keeps the bytes moved by all transfer threads under ``rate`` per second.

    Called from the progress callbacks, i.e. inside the upload's request stream: sleeping
    there slows the sender and gRPC's flow control does the rest.
    """

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self._start = time.monotonic()
        self._moved = 0
        self._lock = threading.Lock()

    def __call__(self, amount: int) -> None:
        if not self.rate:
            return
        with self._lock:
            self._moved += amount
            due = self._start + self._moved / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


# ---------------------------------------------------------------------------------------------
# upload
# ---------------------------------------------------------------------------------------------


@dataclass
class UploadJob:
    local: str  # "-" = stdin
    folder: str  # remote folder path
    name: str
    size: int = 0
    remote_path: str = ""
    stats: UploadStats = field(default_factory=UploadStats)
    result: dict[str, object] | None = None


def _split_dest(paths: list[str], explicit: str | None) -> tuple[list[str], str | None]:
    """``SRC... [DEST_DIR]`` as ``cp`` reads it: with two or more arguments the last one is
    the remote folder (never a local path: ``upload -r ./photos /`` means remote ``/``).
    ``-t DEST_DIR`` names it explicitly, and then every argument is a source."""
    if explicit is not None:
        return paths, explicit
    if len(paths) >= 2:
        return paths[:-1], paths[-1]
    return paths, None


def _plan_uploads(
    ctx: Context, sources: list[str], dest: str, args: argparse.Namespace
) -> tuple[list[str], list[UploadJob]]:
    """Remote folders to create (parents first) and files to send; fails before any byte."""
    folders: list[str] = [dest]
    jobs: list[UploadJob] = []
    if args.name and (len(sources) != 1 or os.path.isdir(sources[0])):
        raise UsageError("--name needs exactly one file to upload")
    for src in sources:
        if src == "-":
            jobs.append(UploadJob("-", dest, args.name or "stdin"))
            continue
        if not os.path.lexists(src):
            raise FileNotFoundError(2, "No such file or directory", src)
        if os.path.isdir(src):
            if not args.recursive:
                raise UsageError(f"{src} is a directory (use -r to upload a tree)")
            base = posixpath.join(dest, os.path.basename(os.path.normpath(os.path.abspath(src))))
            for root, dirs, files in os.walk(src):
                dirs.sort()
                rel = os.path.relpath(root, src)
                folder = base if rel == "." else posixpath.join(base, *rel.split(os.sep))
                folders.append(folder)
                for name in sorted(files):
                    local = os.path.join(root, name)
                    job = _file_job(ctx, local, folder, name)
                    if job is not None:
                        jobs.append(job)
            continue
        job = _file_job(ctx, src, dest, args.name or os.path.basename(src))
        if job is None:
            raise UsageError(f"{src} is not a regular file")
        jobs.append(job)
    return folders, jobs


def _file_job(ctx: Context, local: str, folder: str, name: str) -> UploadJob | None:
    try:
        st = os.stat(local)
    except FileNotFoundError:
        ctx.out.warn(f"skipping {local}: broken symbolic link")
        return None
    if not stat.S_ISREG(st.st_mode):
        ctx.out.warn(f"skipping {local}: not a regular file")
        return None
    return UploadJob(local, folder, name, st.st_size, posixpath.join(folder, name))


def cmd_upload(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.signed_in_client()
    resolver = ctx.resolver
    sources, dest_arg = _split_dest(args.paths, args.target_dir)
    if not sources:
        raise UsageError("nothing to upload")
    dest = resolver.absolute(dest_arg) if dest_arg else ctx.cwd
    if dest != "/":
        existing = resolver.try_stat(dest)
        if existing is not None and not existing.is_folder:
            raise errors.InvalidArgument(f"not a folder: {dest}")
    folders, jobs = _plan_uploads(ctx, sources, dest, args)
    folder_ids: dict[str, str] = {}
    for folder in folders:
        if folder not in folder_ids:
            folder_ids[folder] = resolver.ensure_folder(folder)
    if not jobs:
        ctx.out.info(f"nothing to upload (folders created under {dest})")
        return 0

    cancel = threading.Event()
    limit = RateLimit(args.limit_rate)
    total = sum(j.size for j in jobs)
    started = time.monotonic()
    failures: list[tuple[UploadJob, BaseException]] = []
    label = f"Uploading {jobs[0].name}" if len(jobs) == 1 else f"Uploading {len(jobs)} files"
    with ctx.out.progress(total, label) as bar:

        def run(item: UploadJob | list[UploadJob]) -> None:
            if isinstance(item, list):
                _upload_batch(ctx, client, item, folder_ids, args, bar, cancel, limit,
                              failures)
            else:
                _upload_one(ctx, client, item, folder_ids[item.folder], args, bar, cancel,
                            limit)

        work = _batched(jobs) if len(jobs) > 1 and not args.limit_rate else list(jobs)
        _run_parallel(ctx, work, run, max(1, args.jobs), cancel, failures, bar)
    sent = sum(j.stats.bytes_sent for j in jobs)
    referenced = sum(j.stats.bytes_referenced for j in jobs)
    done = len(jobs) - len(failures)
    if args.json:
        ctx.out.json([j.result for j in jobs if j.result is not None])
    elif len(jobs) > 1:
        elapsed = time.monotonic() - started
        ctx.out.info(
            f"{done} of {len(jobs)} files uploaded ({human_size(total)}: "
            f"{human_size(sent)} sent, {human_size(referenced)} already stored) "
            f"in {elapsed:.1f} s"
        )
    return _report_failures(ctx, failures, lambda j: j.local)


def _batched(jobs: list[UploadJob]) -> list[UploadJob | list[UploadJob]]:
    """Small files grouped for UploadSmallFiles (one call and one commit per group);
    the others go one by one, largest first so they start early."""
    singles: list[UploadJob | list[UploadJob]] = []
    batches: list[UploadJob | list[UploadJob]] = []
    batch: list[UploadJob] = []
    held = 0
    for job in jobs:
        if job.local == "-" or job.size > BATCH_FILE:
            singles.append(job)
            continue
        if batch and (len(batch) >= BATCH_COUNT or held + job.size > BATCH_BYTES):
            batches.append(batch)
            batch, held = [], 0
        batch.append(job)
        held += job.size
    if batch:
        batches.append(batch)
    return singles + batches


def _upload_batch(
    ctx: Context,
    client: CloudClient,
    jobs: list[UploadJob],
    folder_ids: dict[str, str],
    args: argparse.Namespace,
    bar: Progress,
    cancel: threading.Event,
    limit: RateLimit,
    failures: list[tuple[UploadJob, BaseException]],
) -> None:
    """Small files in one UploadSmallFiles call; each one succeeds or fails on its own."""
    if cancel.is_set():
        raise Cancelled("interrupted")
    items: list[SmallUpload] = []
    sent: list[UploadJob] = []
    for job in jobs:
        try:
            with open(job.local, "rb") as handle:
                data = handle.read(BATCH_FILE + 1)
                st = os.fstat(handle.fileno())
        except OSError as exc:
            failures.append((job, exc))
            continue
        if len(data) > BATCH_FILE:  # grew since it was listed: stream it instead
            _upload_one_of_many(ctx, client, job, folder_ids, args, bar, cancel, limit,
                                failures)
            continue
        items.append(SmallUpload(
            data=data, filename=job.name, parent_folder_id=folder_ids[job.folder],
            replace_existing=not args.no_clobber, mode=stat.S_IMODE(st.st_mode),
            mtime_ns=st.st_mtime_ns))
        job.stats.bytes_total = len(data)
        sent.append(job)
    if not items:
        return
    try:
        replies = client.upload_small_files(items)
    except errors.NotImplementedYet:  # an older gateway: one by one
        for job in sent:
            _upload_one_of_many(ctx, client, job, folder_ids, args, bar, cancel, limit,
                                failures)
        return
    except errors.CloudError as exc:
        failures.extend((job, exc) for job in sent)
        return
    for job, reply in zip(sent, replies, strict=True):
        bar.advance(job.stats.bytes_total)
        if isinstance(reply, errors.AlreadyExists) and args.no_clobber:
            job.result = {"local": job.local, "path": job.remote_path, "skipped": True}
            if not args.json:
                _log(ctx, bar, f"skipped {job.remote_path or job.name}: exists")
        elif isinstance(reply, errors.CloudError):
            failures.append((job, reply))
        else:
            if reply.chunks_stored:
                job.stats.bytes_sent, job.stats.chunks_sent = job.stats.bytes_total, 1
            elif reply.chunks_deduplicated:
                job.stats.bytes_referenced = job.stats.bytes_total
                job.stats.chunks_referenced = 1
            _uploaded(ctx, job, reply, bar, args)


def _upload_one_of_many(
    ctx: Context,
    client: CloudClient,
    job: UploadJob,
    folder_ids: dict[str, str],
    args: argparse.Namespace,
    bar: Progress,
    cancel: threading.Event,
    limit: RateLimit,
    failures: list[tuple[UploadJob, BaseException]],
) -> None:
    """``_upload_one`` inside a batch: its failure is that file's, the batch goes on."""
    try:
        _upload_one(ctx, client, job, folder_ids[job.folder], args, bar, cancel, limit)
    except (errors.CloudError, OSError) as exc:
        failures.append((job, exc))


def _upload_one(
    ctx: Context,
    client: CloudClient,
    job: UploadJob,
    folder_id: str,
    args: argparse.Namespace,
    bar: Progress,
    cancel: threading.Event,
    limit: RateLimit,
) -> None:
    def progress(amount: int) -> None:
        if cancel.is_set():
            raise Cancelled("interrupted")
        bar.advance(amount)
        limit(amount)

    mode = 0
    mtime_ns = 0
    if job.local != "-":
        st = os.stat(job.local)
        mode = stat.S_IMODE(st.st_mode)
        mtime_ns = st.st_mtime_ns
        source: object = job.local
    else:
        source = sys.stdin.buffer
    try:
        response = client.upload(
            source,  # type: ignore[arg-type]
            filename=job.name,
            parent_folder_id=folder_id,
            replace_existing=not args.no_clobber,
            mode=mode,
            mtime_ns=mtime_ns,
            progress=progress,
            known_chunks=not args.no_dedup,
            stats=job.stats,
        )
    except errors.AlreadyExists:
        if args.no_clobber:
            job.result = {"local": job.local, "path": job.remote_path, "skipped": True}
            if not args.json:
                _log(ctx, bar, f"skipped {job.remote_path or job.name}: exists")
            return
        raise
    _uploaded(ctx, job, response, bar, args)


def _uploaded(ctx: Context, job: UploadJob, response: pb.UploadFileResponse, bar: Progress,
              args: argparse.Namespace) -> None:
    """Record (and show) one file the gateway committed."""
    size = response.entry.file_size if response.entry.file_id else job.stats.bytes_total
    remote = normalize(response.entry.path or posixpath.join(job.folder, job.name))
    job.result = {
        "local": job.local,
        "path": remote,
        "id": response.file_id,
        "size": size,
        "bytes_sent": job.stats.bytes_sent,
        "bytes_referenced": job.stats.bytes_referenced,
        "chunks_sent": job.stats.chunks_sent,
        "chunks_referenced": job.stats.chunks_referenced,
        "chunks_stored": response.chunks_stored,
        "chunks_deduplicated": response.chunks_deduplicated,
    }
    if args.json:
        return
    extra = ""
    if job.stats.bytes_referenced:
        extra = f", {human_size(job.stats.bytes_referenced)} already stored"
    shown = "stdin" if job.local == "-" else job.local
    _log(
        ctx,
        bar,
        f"uploaded {shown} -> {remote} ({human_size(size)}{extra}) id {response.file_id}",
        ok=True,
    )


def _log(ctx: Context, bar: Progress, text: str, ok: bool = False) -> None:
    if ctx.out.rich_stderr and bar._bar is not None:
        bar.log(("✓ " if ok else "") + text)
    elif ok:
        ctx.out.success(text)
    else:
        ctx.out.info(text)


def _run_parallel(
    ctx: Context,
    jobs: list,
    fn: Callable[[object], None],
    workers: int,
    cancel: threading.Event,
    failures: list,
    bar: Progress,
) -> None:
    """Run ``fn`` over ``jobs`` on a few threads; Ctrl-C stops every transfer promptly."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transfer")
    futures: dict[Future[None], object] = {pool.submit(fn, job): job for job in jobs}
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    failures.append((futures[fut], exc))
    except KeyboardInterrupt:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _report_failures(ctx: Context, failures: list, name: Callable[[object], str]) -> int:
    if not failures:
        return 0
    for job, exc in failures:
        if isinstance(exc, Cancelled):
            raise KeyboardInterrupt
        for one in job if isinstance(job, list) else [job]:  # a batch fails for each file
            ctx.out.error(f"{name(one)}: {describe_error(exc)}")
    return _exit_code(failures[0][1])


# ---------------------------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------------------------


def _local_target(local: str | None, name: str) -> str:
    if not local:
        return name
    if local.endswith(os.sep) or os.path.isdir(local):
        return os.path.join(local, name)
    return local


def _atomic_download(
    client: CloudClient,
    entry: Entry,
    path: str,
    progress: Callable[[int], None] | None,
    offset: int = 0,
    length: int = 0,
) -> int:
    """Download next to ``path`` and rename into place: a failure leaves no torn file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            client.download_to(entry.id, handle, progress, offset=offset, length=length)
            written = handle.tell()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    if entry.mtime_ns and not offset and not length:
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
    return written


def cmd_download(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.signed_in_client()
    entry = ctx.resolver.stat(args.remote)
    if args.offset < 0 or args.length < 0:
        raise UsageError("--offset and --length must not be negative")
    if entry.is_folder:
        if not args.recursive:
            raise errors.InvalidArgument(f"{entry.path or args.remote} is a folder (use -r)")
        if args.local == "-":
            raise UsageError("a folder cannot be written to stdout")
        return _download_tree(ctx, client, entry, args)
    if args.local == "-":
        ctx.out.data_on_stdout = True
        out = sys.stdout.buffer
        limit = RateLimit(args.limit_rate)
        client.download_to(entry.id, out, limit, offset=args.offset, length=args.length)
        out.flush()
        return 0
    path = _local_target(args.local, entry.name)
    total = args.length or max(0, entry.size - args.offset)
    limit = RateLimit(args.limit_rate)
    with ctx.out.progress(total, f"Downloading {entry.name}") as bar:

        def progress(amount: int) -> None:
            bar.advance(amount)
            limit(amount)

        written = _atomic_download(client, entry, path, progress, args.offset, args.length)
    ctx.out.success(f"downloaded {entry.path or entry.id} -> {path} ({human_size(written)})")
    return 0


def _walk_remote(client: CloudClient, folder: Entry) -> list[tuple[str, Entry]]:
    """(relative path, entry) of every file and folder under ``folder``, one listing each."""
    out: list[tuple[str, Entry]] = []
    queue: list[tuple[str, Entry]] = [("", folder)]
    while queue:
        rel, current = queue.pop(0)
        listing = client.list_files(folder_id=current.id)
        for child in split_listing(listing, current.path):
            child_rel = posixpath.join(rel, child.name) if rel else child.name
            out.append((child_rel, child))
            if child.is_folder:
                queue.append((child_rel, child))
    return out


def _download_tree(
    ctx: Context, client: CloudClient, folder: Entry, args: argparse.Namespace
) -> int:
    base = _local_target(args.local, folder.name if not folder.is_root else "cloud")
    os.makedirs(base, exist_ok=True)
    items = _walk_remote(client, folder)
    files = []
    for rel, entry in items:
        local = os.path.join(base, *rel.split("/"))
        if entry.is_folder:
            os.makedirs(local, exist_ok=True)
        elif not entry.symlink_target:
            files.append((local, entry))
    total = sum(e.size for _, e in files)
    cancel = threading.Event()
    limit = RateLimit(args.limit_rate)
    failures: list = []
    with ctx.out.progress(total, f"Downloading {len(files)} files") as bar:

        def run(item: object) -> None:
            local, entry = item  # type: ignore[misc]

            def progress(amount: int) -> None:
                if cancel.is_set():
                    raise Cancelled("interrupted")
                bar.advance(amount)
                limit(amount)

            written = _atomic_download(client, entry, local, progress)
            _log(ctx, bar, f"downloaded {entry.path} -> {local} ({human_size(written)})", True)

        _run_parallel(ctx, files, run, max(1, args.jobs), cancel, failures, bar)
    ctx.out.info(f"{len(files) - len(failures)} of {len(files)} files downloaded to {base}")
    return _report_failures(ctx, failures, lambda item: item[1].path)  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# ls, mkdir, rm, mv
# ---------------------------------------------------------------------------------------------


_SPECIAL_LABELS = ((stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
                   (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))


def _type_label(entry: Entry) -> str:
    if entry.is_folder:
        return "folder"
    if entry.symlink_target:
        return f"link -> {entry.symlink_target}"
    for is_kind, label in _SPECIAL_LABELS:  # entries a mount made with mkfifo, mknod, bind
        if is_kind(entry.mode):
            return label
    return entry.mime_type or "file"


def entry_rows(entries: list[Entry], *, trash: bool = False) -> list[tuple[str, ...]]:
    rows = []
    for e in entries:
        name = e.name + ("/" if e.is_folder else "")
        if e.deleted and not trash:
            name += " (deleted)"
        size = "-" if e.is_folder else human_size(e.size)
        when = format_time(e.modified, e.mtime_ns)
        if trash:
            rows.append((name, e.original_path or e.path, size, format_time(e.deleted_at), e.id))
        else:
            links = "-" if e.is_folder else str(e.names)
            rows.append((name, size, links, _type_label(e), when, e.id))
    return rows


def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.signed_in_client()
    entry = ctx.resolver.stat(args.path or ".")
    if entry is SHARED:
        entries = ctx.resolver.shared_entries()
    elif entry.is_folder:
        listing = client.list_files(folder_id=entry.id, include_deleted=args.all)
        entries = split_listing(listing, entry.path)
    else:
        entries = [entry]
    if args.json:
        ctx.out.json([e.as_json() for e in entries])
        return 0
    ctx.out.table(("name", "size", "links", "type", "modified", "id"), entry_rows(entries),
                  right=("size", "links"))
    return 0


def cmd_mkdir(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.signed_in_client()
    resolver = ctx.resolver
    for raw in args.paths:
        path = resolver.absolute(raw)
        if path == "/":
            if args.parents:
                continue
            raise errors.AlreadyExists("/ already exists")
        if args.parents:
            resolver.ensure_folder(path)
        else:
            parent = resolver.folder(posixpath.dirname(path))
            try:
                client.create_folder(posixpath.basename(path), parent.id)
            except errors.AlreadyExists:
                raise errors.AlreadyExists(f"{path} already exists") from None
        ctx.out.success(f"created {path}")
    return 0


def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.signed_in_client()
    for raw in args.paths:
        try:
            entry = ctx.resolver.stat(raw)
        except errors.NotFound:
            if args.force:
                continue
            raise
        if entry.is_root:
            raise errors.PermissionDenied("refusing to remove the root folder")
        if entry.is_folder:
            if not args.recursive:
                raise errors.InvalidArgument(f"cannot remove {entry.path}: is a folder (use -r)")
            client.delete_folder(entry.id, recursive=True, permanent=args.permanent)
        elif entry.names > 1 and not looks_like_id(raw):
            # one name of a file with several (a hard link): that name goes, as rm does
            # locally; the file stays under its others (an id names the whole file)
            client.delete_file(entry.id, permanent=args.permanent,
                               parent_folder_id=entry.parent_id, name=entry.name)
            ctx.out.success(f"removed the name {entry.path} (the file keeps its other names)")
            continue
        else:
            client.delete_file(entry.id, permanent=args.permanent)
        what = "deleted permanently" if args.permanent else "moved to trash"
        ctx.out.success(f"{what}: {entry.path or entry.id}")
    return 0


def cmd_mv(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.signed_in_client()
    resolver = ctx.resolver
    src = resolver.stat(args.src)
    if src.is_root:
        raise errors.PermissionDenied("the root folder cannot be moved")
    dst_path = resolver.absolute(args.dst)
    target = resolver.try_stat(args.dst)
    replace = False
    if target is not None and target.is_folder and target.id != src.id:
        parent, name = target, src.name
    elif target is not None and not target.is_folder and target.id != src.id:
        if args.no_clobber:
            raise errors.AlreadyExists(f"{dst_path} exists")
        if src.is_folder:
            raise errors.InvalidArgument(f"cannot move a folder over the file {dst_path}")
        parent, name, replace = resolver.folder(posixpath.dirname(dst_path)), target.name, True
    else:
        parent = resolver.folder(posixpath.dirname(dst_path))
        name = posixpath.basename(dst_path)
    several = src.names > 1 and not looks_like_id(args.src)  # which name of the file moves
    response = client.move_entry(src.id, parent.move_ref, name, replace_existing=replace,
                                 old_parent_folder_id=src.parent_id if several else "",
                                 old_name=src.name if several else "")
    moved = Entry.from_response(response)
    final = moved.path or posixpath.join(parent.path, name)
    ctx.out.success(f"moved {src.path or src.id} -> {final}")
    return 0


# ---------------------------------------------------------------------------------------------
# share
# ---------------------------------------------------------------------------------------------


def cmd_share(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.signed_in_client()
    if args.list:
        file_id = ctx.resolver.stat(args.path).id if args.path else ""
        shares = list(client.list_shares(file_id).shares)
        if args.json:
            ctx.out.json(
                [
                    {
                        "share_id": s.share_id,
                        "file_id": s.file_id,
                        "filename": s.filename,
                        "shared_with": s.shared_with_email,
                        "permission": s.permission,
                        "created_at": s.created_at,
                    }
                    for s in shares
                ]
            )
            return 0
        ctx.out.table(
            ("share id", "file", "shared with", "permission", "created"),
            [
                (
                    s.share_id,
                    s.filename,
                    s.shared_with_email,
                    s.permission,
                    format_time(s.created_at),
                )
                for s in shares
            ],
        )
        return 0
    if args.with_me:
        entries = split_listing(client.list_shared_with_me(), "/Shared")
        if args.json:
            ctx.out.json([e.as_json() for e in entries])
            return 0
        rows = [(e.name, human_size(e.size), e.owner_email, e.permission, e.id) for e in entries]
        ctx.out.table(("name", "size", "owner", "permission", "id"), rows, right=("size",))
        return 0
    if args.revoke is not None:
        if args.revoke:
            client.revoke_share(args.revoke)
            ctx.out.success(f"share {args.revoke} revoked")
            return 0
        if not (args.path and args.email):
            raise UsageError("share --revoke needs a share ID, or PATH and EMAIL")
        entry = ctx.resolver.stat(args.path)
        client.revoke_share(file_id=entry.id, shared_with_email=args.email)
        ctx.out.success(f"{entry.path} no longer shared with {args.email}")
        return 0
    if not (args.path and args.email):
        raise UsageError("share needs PATH and EMAIL (or --list, --with-me, --revoke ID)")
    entry = ctx.resolver.stat(args.path)
    response = client.share_file(entry.id, args.email, args.permission)
    token = f" (token {response.share_token})" if response.share_token else ""
    ctx.out.success(f"shared {entry.path} with {args.email}: {args.permission}{token}")
    return 0


# ---------------------------------------------------------------------------------------------
# trash
# ---------------------------------------------------------------------------------------------


def _trash_entries(client: CloudClient) -> list[Entry]:
    listing = client.list_trash()
    entries = [Entry.from_folder(d) for d in listing.folders]
    entries += [Entry.from_file(f) for f in listing.files]
    for e in entries:
        e.deleted = True
        if not e.original_path and e.is_folder:
            e.original_path = e.path
    return sorted(entries, key=lambda e: (e.original_path or e.path, e.deleted_at))


def _find_in_trash(ctx: Context, entries: list[Entry], ref: str) -> Entry:
    """An id, an original path, or (when unambiguous enough) a bare name."""
    if looks_like_id(ref):
        for e in entries:
            if e.id == ref:
                return e
    path = ctx.resolver.absolute(ref)
    matches = [e for e in entries if path in (e.original_path, e.path)]
    if not matches and "/" not in ref:
        matches = [e for e in entries if e.name == ref]
    if not matches:
        raise errors.NotFound(f"not in the trash: {ref}")
    return max(matches, key=lambda e: e.deleted_at)  # the most recent deletion


def cmd_trash(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.signed_in_client()
    action = args.action or "list"
    entries = _trash_entries(client)
    if action == "list":
        if args.json:
            ctx.out.json([e.as_json() for e in entries])
            return 0
        if not entries:
            ctx.out.info("the trash is empty")
            return 0
        ctx.out.table(
            ("name", "original path", "size", "deleted", "id"),
            entry_rows(entries, trash=True),
            right=("size",),
        )
        return 0
    if action == "restore":
        entry = _find_in_trash(ctx, entries, args.ref)
        parent = ctx.resolver.folder(args.to).move_ref if args.to else ""
        response = client.restore_file(
            entry.id, new_parent_folder_id=parent, new_name=args.name or ""
        )
        restored = Entry.from_response(response)
        ctx.out.success(f"restored {restored.path or entry.original_path or entry.name}")
        return 0
    # empty
    ids = [_find_in_trash(ctx, entries, ref).id for ref in args.refs]
    count = len(ids) or len(entries)
    if not count:
        ctx.out.info("the trash is empty")
        return 0
    if not args.yes and sys.stdin.isatty():
        answer = ctx.prompt(f"Delete {count} item(s) in the trash for good? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            ctx.out.info("nothing deleted")
            return 1
    response = client.empty_trash(ids)
    freed = human_size(response.bytes_freed)
    ctx.out.success(f"removed {response.files_removed} file(s) for good, freed {freed}")
    return 0
