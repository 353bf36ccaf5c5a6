"""``cloudgrpc-pay``: buy storage with MTN Mobile Money or Orange Money.

    cloudgrpc-pay tiers
    cloudgrpc-pay buy                                   # prompts, then waits for the phone
    cloudgrpc-pay buy --tier starter --provider mtn_momo --phone 237670000001 --yes
    cloudgrpc-pay status --payment-id ID [--wait]
    cloudgrpc-pay history [--limit N]

The session is the one ``cloudgrpc login`` keeps in the keyring (or
``$CLOUDGRPC_SESSION_TOKEN``); ``--server HOST:PORT`` or ``$CLOUDGRPC_SERVER`` picks the
gateway. Exit status: 0 done, 1 payment failed, 3 still waiting for approval, otherwise the
typed error's code (2 invalid input, 7 not signed in, 12 unavailable, ...).

What the gateway sends (tier names and descriptions, payment messages, ids, phone numbers,
error messages) is shown through ``cloudgrpc_proto.display``: escaped, never rich markup.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.prompt import Confirm, Prompt
from rich.table import Table

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient, not_signed_in
from cloudgrpc_proto.display import markup_safe as esc
from cloudgrpc_proto.display import safe_text
from cloudgrpc_proto.session_store import SessionStoreError

from . import phone as phones

EXIT_FAILED = 1
EXIT_PENDING = 3
FINAL = ("completed", "failed")
MiB = 1024 * 1024


def human(n: int) -> str:
    if n >= 1024 * MiB:
        return f"{n / (1024 * MiB):g} GB"
    return f"{n / MiB:g} MB"


def _client(args: argparse.Namespace) -> CloudClient:
    token = os.environ.get("CLOUDGRPC_SESSION_TOKEN", "").strip()
    if token:  # scripts and tests may hand the session over directly
        return CloudClient(args.server, session_token=token)
    return CloudClient.from_session_store(args.server)


def _demo_note(console: Console) -> None:
    console.print("[bold yellow]DEMO MODE[/]: Campay's demo environment; at most a few XAF "
                  "are collected per payment, the full tier is granted.")


def _tiers_table(tiers: list[pb.StorageTier]) -> Table:
    table = Table(title="Storage tiers")  # every cell a Text: tier texts are not markup
    table.add_column("#", justify="right")
    table.add_column("Tier")
    table.add_column("Name")
    table.add_column("Storage", justify="right")
    table.add_column("Price", justify="right")
    table.add_column("Description")
    for i, t in enumerate(tiers, 1):
        table.add_row(str(i), safe_text(t.name), safe_text(t.display_name),
                      human(t.storage_bytes), f"{t.price_xaf:,} XAF", safe_text(t.description))
    return table


def cmd_tiers(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        reply = client.storage_tiers()
    if not reply.tiers:
        console.print("No storage tiers are on sale right now.")
        return 0
    console.print(_tiers_table(list(reply.tiers)))
    if reply.demo_mode:
        _demo_note(console)
    return 0


def _pick_tier(tiers: list[pb.StorageTier], choice: str) -> pb.StorageTier | None:
    choice = choice.strip().lower()
    if choice.isascii() and choice.isdigit() and 1 <= int(choice) <= len(tiers):
        return tiers[int(choice) - 1]
    for t in tiers:
        if choice in (t.name.lower(), t.tier_id.lower(), t.display_name.lower()):
            return t
    return None


def _ask(console: Console, question: str, check: Callable[[str], object]) -> object:
    """Prompt until ``check`` accepts the answer; EOF on stdin aborts."""
    while True:
        answer = Prompt.ask(question, console=console)
        try:
            return check(answer)
        except errors.InvalidArgument as exc:
            console.print(safe_text(exc.message, "red"))


def cmd_buy(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        if not client.signed_in:
            raise errors.Unauthenticated(not_signed_in(client.target))
        tiers_reply = client.storage_tiers()
        tiers = list(tiers_reply.tiers)
        if not tiers:
            console.print("No storage tiers are on sale right now.")
            return 1
        interactive = not (args.tier and args.provider and args.phone)
        if interactive:
            console.print(_tiers_table(tiers))
            if tiers_reply.demo_mode:
                _demo_note(console)

        if args.tier:
            tier = _pick_tier(tiers, args.tier)
            if tier is None:
                raise errors.InvalidArgument(
                    f"no tier {args.tier!r}: choose one of {', '.join(t.name for t in tiers)}")
        else:
            def check_tier(answer: str) -> pb.StorageTier:
                found = _pick_tier(tiers, answer)
                if found is None:
                    raise errors.InvalidArgument("type a tier number or name from the table")
                return found
            tier = _ask(console, "Tier (number or name)", check_tier)  # type: ignore[assignment]

        if args.provider:
            provider = phones.normalize_provider(args.provider)
        else:
            console.print("Providers: 1) MTN Mobile Money (mtn_momo)  2) Orange Money "
                          "(orange_money)")

            def check_provider(answer: str) -> str:
                answer = answer.strip()
                return phones.normalize_provider(
                    {"1": phones.MTN_MOMO, "2": phones.ORANGE_MONEY}.get(answer, answer))
            provider = _ask(console, "Provider", check_provider)  # type: ignore[assignment]

        if args.phone:
            _, number = phones.validate(provider, args.phone)
        else:
            number = _ask(console, f"Phone number (237 and 9 digits, e.g. {phones.EXAMPLE})",
                          lambda a: phones.validate(provider, a)[1])  # type: ignore[assignment]

        summary = (f"{tier.display_name} (+{human(tier.storage_bytes)}) for "
                   f"{tier.price_xaf:,} XAF from {number} with {phones.PROVIDERS[provider]}")
        if not args.yes and not Confirm.ask(safe_text(f"Buy {summary}?"), console=console,
                                            default=True):
            console.print("Cancelled: nothing was charged.")
            return 1
        reply = client.initiate_payment(tier.tier_id, provider, number)
        console.print(f"Payment [bold]{esc(reply.payment_id)}[/] started: collecting "
                      f"{reply.amount_xaf:,} XAF.")
        if reply.demo_mode:
            console.print("[bold yellow]DEMO MODE[/]: "
                          f"{reply.amount_xaf} XAF collected instead of {tier.price_xaf} XAF; "
                          f"the full {human(tier.storage_bytes)} is granted.")
        how = "Approve the payment on your phone"
        if reply.ussd_code:
            how += f" (no prompt? dial {reply.ussd_code})"
        console.print(safe_text(how + "."))
        if args.no_wait:
            console.print(safe_text("Check it later: cloudgrpc-pay status --payment-id "
                                    f"{reply.payment_id}"))
            return EXIT_PENDING
        return _wait(client, console, reply.payment_id, args.timeout, args.interval)


def _wait(client: CloudClient, console: Console, payment_id: str, timeout: float,
          interval: float) -> int:
    deadline = time.monotonic() + timeout
    status = client.check_payment_status(payment_id)
    with console.status("Waiting for the approval on your phone...", spinner="dots"):
        while status.status not in FINAL and time.monotonic() < deadline:
            time.sleep(interval)
            try:
                status = client.check_payment_status(payment_id)
            except errors.Unavailable as exc:
                console.print(safe_text(f"gateway not reachable ({exc.message}); still "
                                        "waiting", "yellow"))
    return _report(console, status)


def _report(console: Console, status: pb.CheckPaymentStatusResponse) -> int:
    if status.status == "completed":
        console.print(f"[bold green]Payment completed[/]: {human(status.storage_added)} added "
                      "to your storage.")
        return 0
    if status.status == "failed":
        console.print(f"[bold red]Payment failed[/]: {esc(status.message or 'declined')}. "
                      "Nothing was added and no storage was charged for.")
        return EXIT_FAILED
    console.print(safe_text(f"Payment {status.payment_id} is still {status.status}: "
                            f"{status.message}"))
    console.print(safe_text(f"Check it later: cloudgrpc-pay status --payment-id "
                            f"{status.payment_id}"))
    return EXIT_PENDING


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        if args.wait:
            return _wait(client, console, args.payment_id, args.timeout, args.interval)
        status = client.check_payment_status(args.payment_id)
    console.print(f"Payment {esc(status.payment_id)}: [bold]{esc(status.status)}[/]")
    if status.message:
        console.print(safe_text(status.message))
    if status.storage_added:
        console.print(f"Storage added: {human(status.storage_added)}")
    return {"completed": 0, "failed": EXIT_FAILED}.get(status.status, EXIT_PENDING)


def cmd_history(args: argparse.Namespace, console: Console) -> int:
    with _client(args) as client:
        reply = client.payment_history(args.limit)
    if not reply.payments:
        console.print("No payments yet: buy storage with cloudgrpc-pay buy")
        return 0
    colors = {"completed": "green", "failed": "red"}
    if console.width < 130:  # a narrow terminal: one block per payment, the ID kept whole
        for p in reply.payments:
            color = colors.get(p.status, "yellow")
            line = safe_text(f"{_when(p.created_at)}  ")
            line.append(safe_text(f"{p.status:<10}", color))
            line.append(safe_text(
                f" {p.tier_name} +{human(p.storage_bytes)}  {p.amount_xaf:,} XAF  "
                f"{phones.PROVIDERS.get(p.provider, p.provider)} {p.phone_number}"))
            console.print(line)
            console.print(safe_text(f"  payment ID {p.payment_id}"), soft_wrap=True)
        return 0
    table = Table(title="Payment history")
    for col in ("Date", "Payment ID", "Tier", "Storage", "Amount", "Provider", "Phone",
                "Status"):
        table.add_column(col, no_wrap=True)
    for p in reply.payments:
        color = colors.get(p.status, "yellow")
        table.add_row(safe_text(_when(p.created_at)), safe_text(p.payment_id),
                      safe_text(p.tier_name), human(p.storage_bytes), f"{p.amount_xaf:,} XAF",
                      safe_text(phones.PROVIDERS.get(p.provider, p.provider)),
                      safe_text(p.phone_number), safe_text(p.status, color))
    console.print(table)
    return 0


def _when(iso: str) -> str:
    return iso.replace("T", " ").rstrip("Z")[:16]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloudgrpc-pay",
                                     description="Buy CloudGrpc storage with mobile money.")
    parser.add_argument("--server", help="gateway HOST:PORT (default $CLOUDGRPC_SERVER or "
                                         "localhost:50051)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("tiers", help="list the storage tiers on sale")
    buy = sub.add_parser("buy", help="buy a tier (asks for what is not given)")
    buy.add_argument("--tier", help="tier name or number (see tiers)")
    buy.add_argument("--provider", help="mtn_momo or orange_money")
    buy.add_argument("--phone", help="mobile-money number, 237 and 9 digits")
    buy.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    buy.add_argument("--no-wait", action="store_true", help="do not wait for the approval")
    status = sub.add_parser("status", help="a payment's status")
    status.add_argument("--payment-id", required=True)
    status.add_argument("--wait", action="store_true", help="wait until it is finished")
    for p in (buy, status):
        p.add_argument("--timeout", type=float, default=300.0,
                       help="seconds to wait for the approval (default 300)")
        p.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    history = sub.add_parser("history", help="your payments")
    history.add_argument("--limit", type=int, default=20)
    return parser


COMMANDS = {"tiers": cmd_tiers, "buy": cmd_buy, "status": cmd_status, "history": cmd_history}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False, emoji=False)
    err = Console(stderr=True, highlight=False, emoji=False)
    try:
        return COMMANDS[args.command](args, console)
    except errors.CloudError as exc:
        err.print(safe_text(f"cloudgrpc-pay: {exc.message}", "red"))
        return exc.exit_code
    except SessionStoreError as exc:
        err.print(safe_text(f"cloudgrpc-pay: {exc}", "red"))
        return 1
    except (EOFError, KeyboardInterrupt):
        err.print("\ncloudgrpc-pay: cancelled")
        return 130


if __name__ == "__main__":
    sys.exit(main())
