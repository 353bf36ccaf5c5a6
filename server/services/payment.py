"""PaymentService: storage tiers, mobile-money payments, their status and history.

``build_payment_servicer`` wires it: the Campay client (real Campay when
``CAMPAY_APP_USERNAME``/``CAMPAY_APP_PASSWORD`` are set; the local Campay stand-in, started
in-process on a free loopback port, only with ``CAMPAY_STANDIN=1`` as the demo sets it,
since it approves every purchase without money; otherwise no Campay at all, and starting a
payment is refused with a message naming the settings), the ledger, the background
reconciliation of unfinished payments and, when ``WEBHOOK_PORT`` is set, the HTTP endpoint
Campay calls.

Timings beyond ``config.Settings`` (seconds): ``CAMPAY_TIMEOUT_S`` (30), ``CAMPAY_RETRIES``
(3), ``CAMPAY_BACKOFF_S`` (0.5), ``PAYMENT_RECONCILE_INTERVAL_S`` (10), ``PAYMENT_EXPIRY_S``
(600); the per-user limit on starting payments: ``PAYMENT_RATE_LIMIT`` (5) per
``PAYMENT_RATE_WINDOW_S`` (60); the stand-in's payer: ``CAMPAY_STANDIN_OUTCOME`` (success),
``CAMPAY_STANDIN_APPROVE_S`` (3); ``WEBHOOK_HOST`` (the gateway's host).
"""

from __future__ import annotations

import logging
import secrets

import grpc

from cloudgrpc_payment.campay_client import DEMO_BASE_URL, CampayClient, is_demo_url
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.environment import get_bool, get_float, get_int, get_str
from cloudgrpc_proto.private_files import load_or_create_secret

from ..accounts import Accounts
from ..config import Settings
from ..db import Database
from ..events import EventBus
from ..grpc_edge import rpc
from ..key_files import STANDIN_KEY_FILE
from ..payments import LedgerOptions, PaymentLedger, PaymentView, Reconciler, TierView

log = logging.getLogger(__name__)


def _tier_pb(t: TierView) -> pb.StorageTier:
    return pb.StorageTier(tier_id=t.tier_id, name=t.name, display_name=t.display_name,
                          storage_bytes=t.storage_bytes, price_xaf=t.price_xaf,
                          description=t.description, active=t.active)


def _iso(value: object) -> str:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else ""  # type: ignore[attr-defined]


def record_pb(v: PaymentView) -> pb.PaymentRecord:
    return pb.PaymentRecord(
        payment_id=v.payment_id, tier_id=v.tier_id, tier_name=v.tier_name, provider=v.provider,
        phone_number=v.phone_number, amount_xaf=v.charged_xaf, status=v.status,
        transaction_ref=v.transaction_ref, storage_bytes=v.storage_bytes,
        created_at=_iso(v.created_at), completed_at=_iso(v.completed_at), operator=v.operator)


class PaymentServicer(pb_grpc.PaymentServiceServicer):
    def __init__(self, accounts: Accounts, ledger: PaymentLedger) -> None:
        self.accounts = accounts
        self.ledger = ledger
        self.closers: list = []
        self.mode = ""  # how payments are taken, for the gateway's banner

    def close(self) -> None:
        """Stop the reconciler, the webhook endpoint and the stand-in (if any)."""
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                log.debug("payment shutdown step failed", exc_info=True)
        self.closers.clear()

    @rpc
    def GetStorageTiers(self, request: pb.GetStorageTiersRequest,
                        context: grpc.ServicerContext) -> pb.GetStorageTiersResponse:
        return pb.GetStorageTiersResponse(
            success=True, tiers=[_tier_pb(t) for t in self.ledger.tiers()],
            demo_mode=self.ledger.demo_mode)

    @rpc
    def InitiatePayment(self, request: pb.InitiatePaymentRequest,
                        context: grpc.ServicerContext) -> pb.InitiatePaymentResponse:
        caller = self.accounts.authenticate(request.session_token)
        v = self.ledger.initiate(caller, request.tier_id, request.provider, request.phone_number)
        message = v.message
        if v.demo_mode and v.charged_xaf != v.amount_xaf:
            message += (f" [demo mode: {v.charged_xaf} XAF collected instead of "
                        f"{v.amount_xaf} XAF; the full tier is granted]")
        return pb.InitiatePaymentResponse(
            success=v.status != "failed", message=message, payment_id=v.payment_id,
            transaction_ref=v.transaction_ref, amount_xaf=v.charged_xaf, ussd_code=v.ussd_code,
            demo_mode=v.demo_mode)

    @rpc
    def CheckPaymentStatus(self, request: pb.CheckPaymentStatusRequest,
                           context: grpc.ServicerContext) -> pb.CheckPaymentStatusResponse:
        caller = self.accounts.authenticate(request.session_token)
        v = self.ledger.check(caller, request.payment_id)
        return pb.CheckPaymentStatusResponse(
            success=v.status != "failed", payment_id=v.payment_id, status=v.status,
            message=v.message, storage_added=v.storage_bytes if v.credited else 0)

    @rpc
    def GetPaymentHistory(self, request: pb.GetPaymentHistoryRequest,
                          context: grpc.ServicerContext) -> pb.GetPaymentHistoryResponse:
        caller = self.accounts.authenticate(request.session_token)
        return pb.GetPaymentHistoryResponse(
            success=True,
            payments=[record_pb(v) for v in self.ledger.history(caller, request.limit)])


STANDIN_MODE = "LOCAL CAMPAY STAND-IN, no real money (CAMPAY_STANDIN=1)"
STANDIN_BANNER = f"payments: {STANDIN_MODE}"


def campay_configured(settings: Settings) -> bool:
    return bool(settings.campay_username and settings.campay_password)


def standin_chosen(settings: Settings) -> bool:
    """The offline stand-in is used only when asked for, and never beside real credentials."""
    return get_bool("CAMPAY_STANDIN", False) and not campay_configured(settings)


def payment_warnings(settings: Settings) -> list[str]:
    """The payment modes the banner and ``--status`` must shout about."""
    if standin_chosen(settings):
        return [f"{STANDIN_BANNER}: every purchase is approved without payment"]
    return []


def build_payment_servicer(settings: Settings, db: Database, events: EventBus,
                           accounts: Accounts) -> PaymentServicer:
    """Real Campay with credentials; the stand-in with ``CAMPAY_STANDIN=1``; else nothing
    can be bought (InitiatePayment answers FAILED_PRECONDITION saying what to set)."""
    from cloudgrpc_payment.standin import CampayStandIn

    from ..payment_webhook import WebhookServer

    closers: list = []
    webhook_key = settings.campay_webhook_key
    timeout = get_float("CAMPAY_TIMEOUT_S", 30.0)
    retries = get_int("CAMPAY_RETRIES", 3)
    backoff = get_float("CAMPAY_BACKOFF_S", 0.5)
    webhook_host = get_str("WEBHOOK_HOST", "") or settings.host
    standin: CampayStandIn | None = None
    client: CampayClient | None = None
    demo = False
    if campay_configured(settings):
        base_url = settings.campay_base_url or DEMO_BASE_URL
        demo = is_demo_url(base_url)
        where = f"Campay at {base_url}" + (" (demo mode)" if demo else "")
        client = CampayClient(base_url, settings.campay_username, settings.campay_password,
                              timeout=timeout, retries=retries, backoff_s=backoff)
        if get_bool("CAMPAY_STANDIN", False):
            log.warning("payments: CAMPAY_STANDIN=1 ignored: Campay credentials are set")
    elif standin_chosen(settings):
        # Chosen explicitly: the local stand-in plays Campay (and the payer's phone). Its
        # app password is also the key of its control API (approve, decline, state), kept
        # 0600 in the data folder for the operator and the tests; never logged.
        webhook_key = webhook_key or secrets.token_urlsafe(24)
        key_file = settings.data_dir / STANDIN_KEY_FILE
        password = load_or_create_secret(key_file)
        username = "cloudgrpc-standin"
        webhook_url = ""
        if settings.webhook_port:
            webhook_url = f"http://127.0.0.1:{settings.webhook_port}/campay/webhook"
        standin = CampayStandIn(
            "127.0.0.1", 0, username=username, password=password,
            outcome=get_str("CAMPAY_STANDIN_OUTCOME", "success") or "success",
            approve_after_s=get_float("CAMPAY_STANDIN_APPROVE_S", 3.0),
            webhook_url=webhook_url, webhook_key=webhook_key).start()
        closers.append(standin.stop)
        # The demo URL configured without credentials still means demo mode (capped amounts).
        demo = is_demo_url(settings.campay_base_url)
        where = (f"{STANDIN_MODE}: Campay stand-in listening on {standin.base_url}, payers "
                 f"approve automatically; its control key is kept in {key_file} (mode 0600)")
        client = CampayClient(standin.base_url, username, password, timeout=timeout,
                              retries=retries, backoff_s=backoff)
    else:
        where = ("NOT CONFIGURED (no CAMPAY_APP_USERNAME/CAMPAY_APP_PASSWORD): nothing can "
                 "be bought")
    if client is not None:
        closers.append(client.close)
    ledger = PaymentLedger(db, events, client, LedgerOptions(
        demo_mode=demo, demo_limit_xaf=max(1, settings.campay_demo_limit_xaf),
        expiry_s=get_float("PAYMENT_EXPIRY_S", 600.0), webhook_key=webhook_key,
        standin=standin is not None,
        initiate_limit=get_int("PAYMENT_RATE_LIMIT", 5),
        initiate_window_s=get_float("PAYMENT_RATE_WINDOW_S", 60.0)))
    if standin is not None:
        log.warning("payments: %s", where)
    else:
        log.info("payments: %s", where)
    if settings.webhook_port and client is not None:
        hook = WebhookServer(ledger, webhook_host, settings.webhook_port).start()
        closers.append(hook.stop)
        log.info("payments: Campay webhook endpoint at %s", hook.url)
        if not webhook_key:
            log.warning("payments: CAMPAY_WEBHOOK_KEY is not set: every webhook is refused "
                        "(payments still complete by polling Campay)")
    if client is not None:
        reconciler = Reconciler(ledger, get_float("PAYMENT_RECONCILE_INTERVAL_S", 10.0)).start()
        closers.append(reconciler.stop)
    servicer = PaymentServicer(accounts, ledger)
    servicer.closers = closers
    servicer.mode = where
    return servicer
