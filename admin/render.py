"""Tables and lines for the admin CLI (rich), and the plain JSON form of every answer.

Tables are laid out for an 80-column terminal (rich shrinks or elides the wide text columns
first); colour is used only when the output is a terminal (and ``NO_COLOR`` is unset).

Everything that comes from users or the server (emails, names, tier and node names, event
messages) goes into a table as a ``Text`` of ``cloudgrpc_proto.display.printable``: escape
sequences are shown escaped and ``[blink]`` stays literal text (a plain ``str`` cell would
be parsed as rich markup). The JSON form needs nothing: ``json.dumps`` escapes controls.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from google.protobuf.message import Message
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.display import printable, safe_text

from .units import ago, human_size, local_time

STATUS_STYLE = {"online": "green", "offline": "red", "draining": "yellow",
                "drained": "dim", "completed": "green", "failed": "red",
                "pending": "yellow", "processing": "yellow"}

EVENT_STYLE = {"upload": "green", "download": "cyan", "delete": "magenta", "restore": "magenta",
               "share": "cyan", "node_up": "green", "node_down": "bold red",
               "node_draining": "yellow", "node_drained": "yellow", "replica_repaired": "yellow",
               "under_replicated": "bold yellow",
               "admin_denied": "bold red", "otp_failed": "red", "login": "blue",
               "enrollment": "blue", "quota_changed": "yellow", "tier_changed": "yellow",
               "fsck": "cyan"}


def make_console(file: IO[str] | None = None) -> Console:
    out = file or sys.stdout
    return Console(file=out, highlight=False, emoji=False, soft_wrap=False)


# --- JSON ------------------------------------------------------------------------------


def to_dict(msg: Message) -> dict[str, Any]:
    """Every field of ``msg`` (defaults included), numbers as numbers, nested as dicts."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        value = getattr(msg, field.name)
        if field.is_repeated:
            out[field.name] = [to_dict(v) if field.message_type else v for v in value]
        elif field.message_type:
            out[field.name] = to_dict(value) if msg.HasField(field.name) else None
        else:
            out[field.name] = value
    return out


def event_dict(event: pb.SystemEvent) -> dict[str, Any]:
    data = to_dict(event)
    try:
        data["details"] = json.loads(event.details) if event.details else {}
    except ValueError:
        pass
    return data


def print_json(data: Any, file: IO[str] | None = None, indent: int | None = 2) -> None:
    out = file or sys.stdout
    out.write(json.dumps(data, indent=indent, sort_keys=False) + "\n")
    out.flush()


# --- helpers ---------------------------------------------------------------------------


def _table(title: str | None = None) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
                 collapse_padding=True, show_edge=False,
                 title_justify="left", title_style="bold", header_style="bold")


def _styled(text: str, style: str | None) -> Text:
    return safe_text(text, style or "")


def _elide(text: str, style: str | None = None) -> Text:
    """A cell that is cut with an ellipsis, never wrapped, when its column must shrink."""
    return safe_text(text, style or "", no_wrap=True, overflow="ellipsis")


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "-"


def health_style(score: float) -> str:
    return "green" if score >= 80 else "yellow" if score >= 50 else "red"


# --- views -----------------------------------------------------------------------------


def status_view(st: pb.SystemStatusResponse) -> Table:
    t = Table.grid(padding=(0, 2))
    t.title = "System Status"
    t.title_justify = "left"
    t.title_style = "bold"
    t.add_column(style="bold")
    t.add_column()
    t.add_row("Storage capacity", f"{human_size(st.global_capacity_bytes)}  "
              f"({st.online_nodes}/{st.total_nodes} nodes online)")
    t.add_row("Allocated", f"{human_size(st.global_allocated_bytes)}  (quotas of all users)")
    t.add_row("Used", f"{human_size(st.global_used_bytes)}  "
              f"({_pct(st.global_used_bytes, st.global_allocated_bytes)} of allocated)")
    t.add_row("On the nodes", f"{human_size(st.node_used_bytes)}  "
              f"({_pct(st.node_used_bytes, st.global_capacity_bytes)} of capacity, "
              f"replication {st.replication_factor})")
    if st.stored_bytes or st.logical_bytes:
        t.add_row("Compression", compression_line(st.logical_bytes, st.stored_bytes))
    t.add_row("Users", str(st.total_users))
    t.add_row("Nodes", f"{st.online_nodes} online / {st.total_nodes} total")
    t.add_row("Files", str(st.total_files))
    t.add_row("Chunks", f"{st.total_chunks}  ({st.under_replicated_chunks} under-replicated"
              + (f", {st.garbage_chunks} referenced by no file" if st.garbage_chunks else "")
              + ")")
    if st.under_replicated_chunks:
        t.add_row("Short", _styled(shortfall_line(st), "yellow"))
    t.add_row("Health", _styled(f"{st.system_health:.1f}%", health_style(st.system_health)))
    for label, value in activity_rows(st):
        t.add_row(label, value)
    for i, warning in enumerate(st.security_warnings):
        t.add_row("Security" if i == 0 else "", _styled(warning, "bold red"))
    return t


def activity_rows(st: pb.SystemStatusResponse) -> list[tuple[str, str]]:
    """Traffic, sessions and payments (issue 17): speeds over the last minutes of every
    gateway, signed-in sessions, and the share of settled payments that completed."""
    window = _span(st.speed_window_s)
    return [
        ("Upload speed", f"{human_size(st.upload_bytes_per_s)}/s  (last {window})"),
        ("Download speed", f"{human_size(st.download_bytes_per_s)}/s  (last {window}, "
                           "through the gateways)"),
        ("Active sessions", str(st.active_sessions)),
        ("Payment success", (f"{st.payment_success_rate:.1f}%" if st.payment_success_rate >= 0
                             else "n/a (no payment settled)")
         + f"  (last {_span(st.payment_window_s)})"),
    ]


def activity_json(st: pb.SystemStatusResponse) -> dict[str, Any]:
    """The JSON form's view of the same: ``null`` where the rate is n/a (sent as -1)."""
    return {"payment_success_rate": None} if st.payment_success_rate < 0 else {}


def _span(seconds: int) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min" if seconds % 60 == 0 else f"{seconds / 60:.1f} min"
    return f"{seconds} s"


def saved_fraction(logical: int, stored: int) -> float:
    """The share of the plaintext compression keeps off the disk (0 when none)."""
    return max(0.0, 1.0 - stored / logical) if logical > 0 else 0.0


def compression_line(logical: int, stored: int) -> str:
    """What the nodes hold before and after compression, and the saving."""
    saved = saved_fraction(logical, stored)
    if saved <= 0:
        return f"{human_size(stored)} on disk, nothing saved"
    return (f"{human_size(logical)} of chunks in {human_size(stored)} on disk "
            f"({100.0 * saved:.0f}% saved)")


def shortfall_line(st: pb.SystemStatusResponse) -> str:
    """Why chunks have fewer than ``replication_factor`` live copies, cause by cause."""
    parts = []
    if st.chunks_short_too_few_nodes:
        parts.append(f"{st.chunks_short_too_few_nodes} too few nodes ({st.online_nodes} "
                     f"online, replication {st.replication_factor})")
    if st.chunks_short_no_room:
        parts.append(f"{st.chunks_short_no_room} no node with room for a copy")
    rest = (st.under_replicated_chunks - st.chunks_short_too_few_nodes
            - st.chunks_short_no_room)
    if rest > 0:
        parts.append(f"{rest} being repaired or waiting for offline nodes")
    return "; ".join(parts)


def users_view(users: list[pb.UserInfo]) -> Table:
    t = _table(f"Users ({len(users)})")
    t.add_column("EMAIL", overflow="ellipsis", max_width=32)
    t.add_column("NAME", overflow="ellipsis", max_width=20)
    t.add_column("USED", justify="right", no_wrap=True)
    t.add_column("QUOTA", justify="right", no_wrap=True)
    t.add_column("USE", justify="right", no_wrap=True)
    t.add_column("FILES", justify="right", no_wrap=True)
    t.add_column("LOGIN", justify="right", no_wrap=True)  # how long ago
    for u in users:
        use = u.storage_used / u.storage_allocated if u.storage_allocated else 0.0
        t.add_row(_elide(u.email, None if u.is_active else "dim"), _elide(u.full_name),
                  human_size(u.storage_used), human_size(u.storage_allocated),
                  _styled(_pct(u.storage_used, u.storage_allocated),
                          "red" if use >= 0.9 else None),
                  str(u.file_count), ago(u.last_login, suffix=""))
    return t


def nodes_view(nodes: list[pb.NodeInfo]) -> Table:
    online = sum(1 for n in nodes if n.online)
    t = _table(f"Storage nodes ({online}/{len(nodes)} online)")
    t.add_column("NAME", overflow="ellipsis", max_width=16)
    t.add_column("STATUS", no_wrap=True)
    t.add_column("ADDRESS", overflow="ellipsis", max_width=21)
    t.add_column("USED/CAPACITY", justify="right", no_wrap=True)
    t.add_column("CHUNKS", justify="right", no_wrap=True)
    t.add_column("SAVED", justify="right", no_wrap=True)  # by compression
    t.add_column("HEALTH", justify="right", no_wrap=True)
    t.add_column("BEAT", justify="right", no_wrap=True)
    for n in nodes:
        saved = saved_fraction(n.logical_bytes, n.used_bytes)
        t.add_row(_elide(n.name), _styled(n.status, STATUS_STYLE.get(n.status)),
                  _elide(f"{n.host}:{n.port}"),
                  f"{human_size(n.used_bytes)}/{human_size(n.capacity_bytes)}",
                  str(n.chunk_count), f"{100.0 * saved:.0f}%" if saved > 0 else "-",
                  _styled(f"{n.health_score:.0f}%", health_style(n.health_score)),
                  ago(n.last_heartbeat, suffix=""))
    return t


def user_view(d: pb.GetUserDetailsResponse) -> list[Table]:
    u = d.user
    t = Table.grid(padding=(0, 2))
    t.title = safe_text(f"User {u.email}")
    t.title_justify = "left"
    t.title_style = "bold"
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("Name", safe_text(u.full_name))
    t.add_row("User id", safe_text(u.user_id))
    t.add_row("Status", "active" if u.is_active else _styled("disabled", "red"))
    t.add_row("Storage", f"{human_size(u.storage_used)} used of "
              f"{human_size(u.storage_allocated)} "
              f"({_pct(u.storage_used, u.storage_allocated)})")
    t.add_row("In trash", human_size(d.trash_bytes))
    t.add_row("Files", f"{u.file_count} in {d.folder_count} folders")
    t.add_row("Sessions", f"{d.active_sessions} active")
    t.add_row("Enrolled", local_time(u.created_at, with_date=True))
    t.add_row("Last login", f"{local_time(u.last_login, with_date=True)}  ({ago(u.last_login)})"
              if u.last_login else "never")
    views = [t]
    p = _table(f"Payments ({len(d.payments)})")
    p.add_column("DATE", no_wrap=True)
    p.add_column("TIER", overflow="ellipsis", max_width=12)
    p.add_column("PROVIDER", no_wrap=True)
    p.add_column("XAF", justify="right", no_wrap=True)
    p.add_column("STORAGE", justify="right", no_wrap=True)
    p.add_column("STATUS", no_wrap=True)
    for r in d.payments:
        p.add_row(local_time(r.created_at, with_date=True), _elide(r.tier_name or r.tier_id[:8]),
                  safe_text(r.provider), str(r.amount_xaf), human_size(r.storage_bytes),
                  _styled(r.status, STATUS_STYLE.get(r.status)))
    views.append(p)
    return views


def payments_view(a: pb.PaymentAnalyticsResponse, period: str) -> list[Table | Text]:
    head = Text.assemble(
        (f"Payments, {period}\n", "bold"),
        f"{a.total_payments} payments: {a.completed} completed, {a.failed} failed, "
        f"{a.pending} pending\n",
        f"Revenue {a.revenue_xaf:,} XAF, success rate {a.success_rate:.1f}%")
    return [head, _breakdown("By tier", "TIER", a.by_tier),
            _breakdown("By provider", "PROVIDER", a.by_provider)]


def _breakdown(title: str, label: str, rows: Any) -> Table:
    t = _table(title)
    t.add_column(label, overflow="ellipsis", max_width=16)
    t.add_column("COUNT", justify="right", no_wrap=True)
    t.add_column("DONE", justify="right", no_wrap=True)
    t.add_column("FAILED", justify="right", no_wrap=True)
    t.add_column("PENDING", justify="right", no_wrap=True)
    t.add_column("REVENUE XAF", justify="right", no_wrap=True)
    t.add_column("SUCCESS", justify="right", no_wrap=True)
    t.add_column("SOLD", justify="right", no_wrap=True)
    for b in rows:
        t.add_row(_elide(b.key), str(b.count), str(b.completed), str(b.failed), str(b.pending),
                  f"{b.revenue_xaf:,}", f"{b.success_rate:.1f}%",
                  human_size(b.storage_sold_bytes))
    return t


def event_style(event_type: str) -> str:
    if event_type in EVENT_STYLE:
        return EVENT_STYLE[event_type]
    return "yellow" if event_type.startswith("payment") else "bold"


def event_line(e: pb.SystemEvent) -> Text:
    """One event as one line: time, type, message (and the user when there is one)."""
    line = Text.assemble(
        (local_time(e.timestamp), "dim"), "  ",
        (f"{printable(e.event_type):<13}", event_style(e.event_type)), " ",
        printable(e.message))
    if e.user_id:
        line.append(f"  [user {printable(e.user_id[:8])}]", style="dim")
    return line


# --- fsck ------------------------------------------------------------------------------

FSCK_STYLE = {"missing_on_node": "yellow", "corrupt": "red", "unknown_to_metadata": "yellow",
              "under_replicated": "yellow", "lost_file": "bold red",
              "node_unreachable": "bold red", "link_count": "yellow"}


def fsck_finding_line(f: pb.FsckFinding) -> Text:
    """One finding as one line: ``KIND  what: detail -> action`` (the action with --repair).

    What: ``chunk SHA12 on NODE`` for a copy, ``PATH (owner EMAIL, file ID)`` for a lost
    file, ``node NAME`` for a node; the full hashes are in the JSON form.
    """
    if f.kind in ("lost_file", "link_count"):
        what = f"{f.path} (owner {f.owner_email}, file {f.file_id})"
    elif f.kind == "node_unreachable":
        what = f"node {f.node_name}"
    else:
        what = f"chunk {f.chunk_sha256[:12]}" + (f" on {f.node_name}" if f.node_name else "")
    text = f"{what}: {f.detail}" + (f" -> {f.action}" if f.action else "")
    return Text.assemble((f"{printable(f.kind):<19}", FSCK_STYLE.get(f.kind, "bold")), " ",
                         printable(text))


def fsck_summary_lines(s: pb.FsckSummary, repair: bool) -> list[Text]:
    """The closing lines: what was checked, what was found, and the verdict."""
    verified = (f"{s.verified_copies} copies verified" if s.content_verified
                else "presence only (content not verified)")
    lines = [
        f"fsck: {s.nodes_checked} nodes checked, {s.nodes_unreachable} unreachable; "
        f"{s.files_checked} files, {s.chunks_checked} chunks; {verified}; "
        f"{s.elapsed_s:.1f} s",
        f"found: {s.missing_copies} missing copies, {s.corrupt_copies} corrupt copies, "
        f"{s.unknown_chunks} unknown chunk files ({s.unknown_in_grace} more within "
        f"GC_GRACE_S), {s.under_replicated} under-replicated chunks, {s.lost_files} lost "
        "files",
    ]
    if repair:
        lines.append(f"repair: {s.repaired} fixed, {s.unrepaired} not fixed")
    if s.clean:
        verdict, style = "clean", "green"
    elif not s.problems_remaining and s.complete:
        verdict, style = "every problem found was repaired", "green"
    else:
        verdict = f"{s.problems_remaining} problems remain"
        if not s.complete:
            verdict += " (check incomplete: stopped before its end)"
        style = "bold red"
    out = [Text(printable(line)) for line in lines]
    out.append(Text.assemble(("result: ", "bold"), (verdict, style)))
    return out
