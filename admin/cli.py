"""``cloudgrpc-admin``: the operator's view of a CloudGrpc system.

Without an action it opens the seed's interactive menu. Actions print a table (or JSON with
``--json``) and exit; ``--monitor`` follows the live event stream until Ctrl-C (exit 0) or
``--count`` events.

Exit codes: 0 success; 2 bad usage or arguments; otherwise the ``exit_code`` of the typed
error (``cloudgrpc_proto.errors``): 4 not found, 5 the ``--backup`` file exists, 6 wrong or
missing admin key, 9 a backup is already running, 10 an fsck is already running, 12 gateway
unreachable, 14 the backup received did not match its checksum (nothing written), ...
``--fsck`` adds: 14 a file is lost (a chunk with no readable copy), 16 other problems remain
(found without ``--repair``, or not fixed by it, or a node did not answer, or the check
stopped early).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence

from rich.console import Console

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.channel import default_target
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.display import printable
from cloudgrpc_proto.environment import ConfigError
from cloudgrpc_proto.errors import CloudError, DataLoss, Unavailable

from . import render
from .backup import write_backup
from .keys import resolve_admin_key
from .menu import AdminMenu
from .monitor import EventMonitor
from .units import human_size, parse_size, parse_when

PROG = "cloudgrpc-admin"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Administer a CloudGrpc system: status, users, nodes, payments "
        "and the live event stream. Without an action: the interactive menu.",
        epilog="Exit codes: 0 ok, 2 usage, 4 not found, 5 --backup FILE exists, 6 wrong/"
        "missing admin key, 9 a backup is already running, 10 an fsck is already running, "
        "12 gateway unreachable, 14 the backup received did not match its checksum; --fsck: "
        "14 files lost, 16 problems remain.")
    p.add_argument("--server", metavar="HOST:PORT",
                   help="gateway address (env CLOUDGRPC_SERVER, default localhost:50051)")
    p.add_argument("--admin-key", metavar="KEY",
                   help="admin key (env ADMIN_KEY, else the file DATA_DIR/admin_key)")
    p.add_argument("--tls-ca", metavar="PEM", help="CA certificate: talk TLS to the gateway")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="deadline of each call in seconds (default 30)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables "
                   "(--monitor: one JSON object per line)")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--status", action="store_true", help="system status")
    act.add_argument("--users", action="store_true", help="all users")
    act.add_argument("--nodes", action="store_true", help="storage nodes and their health")
    act.add_argument("--user", metavar="EMAIL", help="one user's details and payments")
    act.add_argument("--payments", action="store_true",
                     help="payment analytics by tier and provider (see --since, --until)")
    act.add_argument("--monitor", action="store_true",
                     help="recent events, then live events until Ctrl-C")
    act.add_argument("--set-quota", nargs=2, metavar=("EMAIL", "SIZE"),
                     help="set a user's quota, e.g. 5GB or 500MB")
    act.add_argument("--drain", metavar="NODE",
                     help="stop placing new chunks on a node (its chunks move elsewhere)")
    act.add_argument("--set-tier", metavar="NAME",
                     help="create or update a storage tier (with --storage, --price ...)")
    act.add_argument("--fsck", action="store_true",
                     help="check the metadata against what the nodes hold (see --repair)")
    act.add_argument("--backup", metavar="FILE",
                     help="write an online snapshot of the metadata and the cluster's keys to "
                     "FILE (0600; it holds secrets: keep it like the gateway's DATA_DIR)")
    g = p.add_argument_group("--payments")
    g.add_argument("--since", metavar="WHEN", default="",
                   help="from: 7d, 24h, 2026-01-31, ISO time or unix seconds (default all)")
    g.add_argument("--until", metavar="WHEN", default="", help="to (default now)")
    g = p.add_argument_group("--monitor")
    g.add_argument("--count", type=int, default=0, metavar="N",
                   help="exit after N events (history included)")
    g.add_argument("--history", type=int, default=20, metavar="N",
                   help="recent events shown first (default 20, 0 = none)")
    g.add_argument("--type", dest="types", action="append", default=[], metavar="TYPE",
                   help="only events of this type (repeatable), e.g. upload, node_down")
    g = p.add_argument_group("--fsck")
    g.add_argument("--repair", action="store_true",
                   help="fix what can be fixed: drop rows of missing/corrupt copies, copy "
                   "short chunks, delete stray chunk files older than GC_GRACE_S")
    g.add_argument("--quick", action="store_true",
                   help="check presence only: do not re-hash each copy (corruption is "
                   "then not found)")
    g = p.add_argument_group("--backup")
    g.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    g = p.add_argument_group("--set-tier")
    g.add_argument("--storage", metavar="SIZE", help="storage the tier adds, e.g. 250MB")
    g.add_argument("--price", type=int, metavar="XAF", help="price in XAF")
    g.add_argument("--display-name", metavar="TEXT", default="")
    g.add_argument("--description", metavar="TEXT", default="")
    g.add_argument("--inactive", action="store_true", help="withdraw the tier from sale")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = render.make_console()
    errors = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    try:
        return _run(args, parser, console)
    except CloudError as exc:
        errors.print(f"{PROG}: {printable(exc.message)}", style="red", markup=False)
        return exc.exit_code
    except (ValueError, ConfigError) as exc:
        errors.print(f"{PROG}: {printable(exc)}", style="red", markup=False)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser, console: Console) -> int:
    if args.count < 0:
        parser.error("--count cannot be negative")
    if (args.repair or args.quick) and not args.fsck:
        parser.error("--repair and --quick go with --fsck")
    if args.overwrite and not args.backup:
        parser.error("--overwrite goes with --backup")
    since, until = parse_when(args.since), parse_when(args.until)
    key = resolve_admin_key(args.admin_key)
    client = CloudClient(default_target(args.server), tls_ca=args.tls_ca, admin_key=key,
                         timeout=args.timeout)
    try:
        if args.monitor:
            return _monitor(client, key, args, console)
        if args.fsck:
            return _fsck(client, key, args, console)
        action = _action(args, client, key, since, until, console)
        if action is None:
            return AdminMenu(client, key, console).run()
        action()
        return 0
    finally:
        client.close()


def _action(args: argparse.Namespace, client: CloudClient, key: str, since: int, until: int,
            console: Console) -> Callable[[], None] | None:
    as_json = args.json

    def status() -> None:
        st = client.system_status(key)
        if as_json:
            render.print_json({**render.to_dict(st), **render.activity_json(st)})
        else:
            console.print(render.status_view(st))

    def users() -> None:
        listed = list(client.list_users(key).users)
        if as_json:
            render.print_json([render.to_dict(u) for u in listed])
        else:
            console.print(render.users_view(listed))

    def nodes() -> None:
        listed = list(client.list_nodes(key).nodes)
        if as_json:
            render.print_json([render.to_dict(n) for n in listed])
        else:
            console.print(render.nodes_view(listed))

    def user() -> None:
        d = client.user_details(args.user, key)
        if as_json:
            render.print_json(render.to_dict(d))
        else:
            for view in render.user_view(d):
                console.print(view)

    def payments() -> None:
        a = client.payment_analytics(since, until, key)
        if as_json:
            render.print_json({**render.to_dict(a), "since": since, "until": until})
            return
        for view in render.payments_view(a, _period(since, until)):
            console.print(view)

    def set_quota() -> None:
        email, size = args.set_quota
        r = client.set_user_quota(email, parse_size(size), key)
        if as_json:
            render.print_json(render.to_dict(r))
        else:
            console.print(printable(f"Quota of {email} set to {human_size(r.storage_allocated)}"
                                    f" ({r.message})."), markup=False)

    def drain() -> None:
        r = client.drain_node(args.drain, key)
        if as_json:
            render.print_json(render.to_dict(r))
        else:
            console.print(printable(r.message), markup=False)

    def set_tier() -> None:
        tier = pb.StorageTier(name=args.set_tier, display_name=args.display_name,
                              storage_bytes=parse_size(args.storage) if args.storage else 0,
                              price_xaf=args.price or 0, description=args.description,
                              active=not args.inactive)
        r = client.upsert_tier(tier, key)
        if as_json:
            render.print_json(render.to_dict(r))
        else:
            t = r.tier
            console.print(printable(f"{r.message}: {t.name} ({t.display_name}) "
                                    f"{human_size(t.storage_bytes)} for {t.price_xaf} XAF"
                                    + ("" if t.active else ", not for sale")), markup=False)

    def backup() -> None:
        r = write_backup(client, key, args.backup, overwrite=args.overwrite,
                         stall_s=max(args.timeout, 5.0))
        if as_json:
            render.print_json({"file": str(r.path), "bytes": r.size, "sha256": r.sha256,
                               "tables": r.tables, "rows": r.rows, "revision": r.revision,
                               "created_at": r.created_at, "contains_secrets": True})
            return
        console.print(printable(
            f"Backup written to {r.path} (mode 0600): {human_size(r.size)}, {r.tables} "
            f"tables, {r.rows} rows, schema {r.revision}, taken {r.created_at}"), markup=False)
        console.print(f"SHA-256 {r.sha256}", markup=False)
        console.print("It holds the cluster secret, the OTP key, the admin key and every "
                      "account's metadata: keep it as private as the gateway's DATA_DIR. "
                      "Restore with: cloudgrpc-gateway --restore FILE", markup=False)

    if args.status:
        return status
    if args.users:
        return users
    if args.nodes:
        return nodes
    if args.user:
        return user
    if args.payments:
        return payments
    if args.set_quota:
        return set_quota
    if args.drain:
        return drain
    if args.set_tier:
        return set_tier
    if args.backup:
        return backup
    return None


def _monitor(client: CloudClient, key: str, args: argparse.Namespace,
             console: Console) -> int:
    errors = Console(file=sys.stderr, highlight=False, soft_wrap=True)

    def show(event: pb.SystemEvent) -> None:
        if args.json:
            render.print_json(render.event_dict(event), indent=None)
        else:
            console.print(render.event_line(event), soft_wrap=True)

    monitor = EventMonitor(client, key, show, history=args.history, event_types=args.types,
                           notice=lambda m: errors.print(f"{PROG}: {printable(m)}",
                                                         style="yellow", markup=False))
    if not args.json:
        errors.print(f"Monitoring events on {client.target} (Ctrl-C to stop)", style="dim",
                     markup=False)
    try:
        monitor.run(count=args.count)
    except KeyboardInterrupt:
        monitor.stop()
    return 0


EXIT_FSCK_LOST = DataLoss.exit_code  # 14: a file has a chunk with no readable copy
EXIT_FSCK_PROBLEMS = 16               # other problems remain


def fsck_exit_code(summary: pb.FsckSummary) -> int:
    """0 when nothing remains wrong (clean, or every problem repaired), 14 when a file is
    lost, 16 when anything else remains (or the check did not run to its end)."""
    if summary.lost_files:
        return EXIT_FSCK_LOST
    if summary.problems_remaining or not summary.complete:
        return EXIT_FSCK_PROBLEMS
    return 0


def _fsck(client: CloudClient, key: str, args: argparse.Namespace, console: Console) -> int:
    """Stream the findings as they come (progress on stderr), then the summary."""
    notes = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    summary: pb.FsckSummary | None = None
    with client.fsck(key, repair=args.repair, presence_only=args.quick) as stream:
        for message in stream:
            kind = message.WhichOneof("body")
            if kind == "progress":
                if not args.json:
                    notes.print(printable(message.progress), style="dim", markup=False)
            elif kind == "finding":
                if args.json:
                    render.print_json({"finding": render.to_dict(message.finding)},
                                      indent=None)
                else:
                    console.print(render.fsck_finding_line(message.finding), soft_wrap=True)
            elif kind == "summary":
                summary = message.summary
    if summary is None:
        raise Unavailable("the gateway ended the fsck without a summary: see its log")
    if args.json:
        render.print_json({"summary": render.to_dict(summary)}, indent=None)
    else:
        for line in render.fsck_summary_lines(summary, args.repair):
            console.print(line, soft_wrap=True)
    return fsck_exit_code(summary)


def _period(since: int, until: int) -> str:
    def day(ts: int) -> str:
        return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")

    if not since and not until:
        return "all time"
    if not until:
        return f"since {day(since)}"
    if not since:
        return f"until {day(until)}"
    return f"{day(since)} to {day(until)}"


if __name__ == "__main__":
    sys.exit(main())
