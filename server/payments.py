"""The payment ledger: storage tiers bought with mobile money through Campay.

A payment's life: ``pending`` (recorded, the collect request on its way to Campay),
``processing`` (Campay asked the phone; waiting for the payer), then ``completed`` or
``failed``. Its status comes from Campay's transaction endpoint only: client status checks,
the background reconciliation of unfinished payments and Campay's webhook all end in
``apply()``, which reads the transaction from Campay and never trusts anything else.

Exactly-once crediting: the tier's storage is added in the same database transaction as a
guarded ``UPDATE payments SET credited_at = now WHERE id = ? AND credited_at IS NULL``; only
the one writer whose update matched a row adds the storage. SQLite serialises writers
(``BEGIN IMMEDIATE``); on PostgreSQL the row lock makes a concurrent update wait and then
re-check ``credited_at``. This holds across threads, gateways and restarts, since nothing of
it lives in memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update

from cloudgrpc_payment import phone as phones
from cloudgrpc_payment.campay_client import (
    FAILED,
    SUCCESSFUL,
    CampayAuthError,
    CampayClient,
    CampayError,
    CampayNotFound,
    CampayRejected,
    CampayTimeout,
    CampayUnavailable,
    Transaction,
    WebhookSignatureError,
    verify_webhook_signature,
)
from cloudgrpc_proto.errors import (
    CloudError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RateLimited,
    Unavailable,
)

from .accounts import Caller
from .db import Database
from .events import EventBus
from .models import Payment, StorageTier, User, utcnow

log = logging.getLogger(__name__)

OPEN = ("pending", "processing")
NOT_CONFIGURED = ("payments are not configured on this gateway: set CAMPAY_APP_USERNAME and "
                  "CAMPAY_APP_PASSWORD (or CAMPAY_STANDIN=1 for the offline stand-in, which "
                  "takes no real money)")
MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class TierView:
    tier_id: str
    name: str
    display_name: str
    storage_bytes: int
    price_xaf: int
    description: str
    active: bool


@dataclass(frozen=True)
class PaymentView:
    payment_id: str
    user_id: str
    tier_id: str
    tier_name: str
    provider: str
    phone_number: str
    amount_xaf: int
    charged_xaf: int
    storage_bytes: int
    status: str
    transaction_ref: str
    operator: str
    ussd_code: str
    message: str
    demo_mode: bool
    created_at: dt.datetime
    completed_at: dt.datetime | None
    credited: bool


@dataclass(frozen=True)
class LedgerOptions:
    demo_mode: bool = False
    demo_limit_xaf: int = 10
    expiry_s: float = 600.0  # a payment not approved within this is failed (expired)
    webhook_key: str = ""
    standin: bool = False
    # Payments a user may start per window (each one asks a phone to pay): more is refused.
    initiate_limit: int = 5
    initiate_window_s: float = 60.0


def human_bytes(n: int) -> str:
    if n >= GiB and n % (GiB // 4) == 0:
        return f"{n / GiB:g} GB"
    return f"{n / MiB:g} MB"


def _tier_view(t: StorageTier) -> TierView:
    return TierView(t.id, t.name, t.display_name, t.storage_bytes, t.price_xaf,
                    t.description or "", bool(t.active))


def _view(p: Payment, tier_name: str) -> PaymentView:
    return PaymentView(
        p.id, p.user_id, p.tier_id, tier_name, p.provider, p.phone_number, p.amount_xaf,
        p.charged_xaf, p.storage_bytes, p.status, p.transaction_ref or "", p.operator or "",
        p.ussd_code or "", p.message or "", bool(p.demo_mode), p.created_at, p.completed_at,
        p.credited_at is not None)


class PaymentLedger:
    """Payments and their crediting; ``campay`` is None when no Campay is configured, and
    then nothing can be bought (tiers and past payments stay readable)."""

    def __init__(self, db: Database, events: EventBus, campay: CampayClient | None,
                 options: LedgerOptions) -> None:
        self.db = db
        self.events = events
        self.campay = campay
        self.options = options

    @property
    def demo_mode(self) -> bool:
        return self.options.demo_mode

    # --- tiers ------------------------------------------------------------------------

    def tiers(self, include_inactive: bool = False) -> list[TierView]:
        with self.db.read() as s:
            q = select(StorageTier).order_by(StorageTier.sort_order, StorageTier.price_xaf)
            if not include_inactive:
                q = q.where(StorageTier.active.is_(True))
            return [_tier_view(t) for t in s.scalars(q)]

    def _tier(self, s: Any, tier_ref: str) -> StorageTier:
        ref = (tier_ref or "").strip()
        if not ref:
            raise InvalidArgument("choose a storage tier (see cloudgrpc-pay tiers)")
        tier = s.get(StorageTier, ref) or s.scalars(
            select(StorageTier).where(StorageTier.name == ref.lower())).first()
        if tier is None or not tier.active:
            raise NotFound(f"no storage tier {ref!r}: see cloudgrpc-pay tiers")
        return tier

    # --- initiate ---------------------------------------------------------------------

    def _campay(self) -> CampayClient:
        if self.campay is None:
            raise FailedPrecondition(NOT_CONFIGURED)
        return self.campay

    def _check_rate(self, s: Any, user_id: str) -> None:
        """Refuse a new payment past ``initiate_limit`` in the window, naming the wait.

        Runs in the payment's write transaction with the user's row locked (PostgreSQL;
        SQLite serialises writers), so parallel calls cannot all slip under the limit.
        """
        limit, window = self.options.initiate_limit, self.options.initiate_window_s
        if limit <= 0:
            return
        s.execute(select(User.id).where(User.id == user_id).with_for_update())
        since = utcnow() - dt.timedelta(seconds=window)
        recent = s.scalars(select(Payment.created_at)
                           .where(Payment.user_id == user_id, Payment.created_at > since)
                           .order_by(Payment.created_at.desc()).limit(limit)).all()
        if len(recent) >= limit:
            wait = max(1, int((recent[-1] - since).total_seconds()) + 1)
            raise RateLimited(f"too many payments started: at most {limit} per "
                              f"{window:g} seconds; try again in {wait} s")

    def initiate(self, caller: Caller, tier_ref: str, provider: str, phone: str
                 ) -> PaymentView:
        campay = self._campay()  # refused at once when no Campay is configured
        provider, phone = phones.validate(provider, phone)  # refused before Campay is called
        with self.db.write() as s:
            tier = self._tier(s, tier_ref)
            self._check_rate(s, caller.user_id)
            charged = tier.price_xaf
            if self.demo_mode:
                charged = max(1, min(tier.price_xaf, self.options.demo_limit_xaf))
            payment = Payment(
                user_id=caller.user_id, tier_id=tier.id, provider=provider, phone_number=phone,
                amount_xaf=tier.price_xaf, charged_xaf=charged, storage_bytes=tier.storage_bytes,
                status="pending", external_reference=uuid.uuid4().hex,
                message="waiting for Campay", demo_mode=self.demo_mode,
                created_at=utcnow(), updated_at=utcnow())
            s.add(payment)
            s.flush()
            pid, ext_ref = payment.id, payment.external_reference
            tier_name, display = tier.name, tier.display_name
            storage = tier.storage_bytes
        self.events.emit(
            "payment_initiated",
            f"{caller.email} started buying {display} ({human_bytes(storage)}) for "
            f"{charged} XAF with {phones.PROVIDERS[provider]}",
            caller.user_id, payment_id=pid, tier=tier_name, provider=provider,
            amount_xaf=charged, price_xaf=tier.price_xaf, storage_bytes=storage,
            demo_mode=self.demo_mode)
        try:
            collection = campay.collect(
                amount=charged, phone=phone, external_reference=ext_ref,
                description=f"CloudGrpc {display} ({human_bytes(storage)})")
        except CampayError as exc:
            error = _cloud_error(exc)
            self._fail(pid, error.message, only_open=True)
            raise error from exc
        with self.db.write() as s:
            s.execute(update(Payment).where(Payment.id == pid, Payment.transaction_ref.is_(None))
                      .values(transaction_ref=collection.reference,
                              ussd_code=collection.ussd_code, operator=collection.operator,
                              updated_at=utcnow()))
            s.execute(update(Payment).where(Payment.id == pid, Payment.status == "pending")
                      .values(status="processing", updated_at=utcnow(),
                              message=_approve_message(charged, collection.ussd_code)))
        if collection.operator and not _operator_matches(provider, collection.operator):
            log.warning("payment %s: provider %s but Campay reports operator %s", pid,
                        provider, collection.operator)
        return self.get(pid)

    # --- reading ----------------------------------------------------------------------

    def get(self, payment_id: str, caller: Caller | None = None) -> PaymentView:
        with self.db.read() as s:
            row = s.execute(select(Payment, StorageTier.name)
                            .join(StorageTier, StorageTier.id == Payment.tier_id)
                            .where(Payment.id == payment_id)).first()
        if row is None or (caller is not None and row[0].user_id != caller.user_id):
            raise NotFound(f"no payment {payment_id!r} on this account")
        return _view(row[0], row[1])

    def history(self, caller: Caller, limit: int = 50) -> list[PaymentView]:
        limit = 50 if limit <= 0 else min(limit, 500)
        with self.db.read() as s:
            rows = s.execute(select(Payment, StorageTier.name)
                             .join(StorageTier, StorageTier.id == Payment.tier_id)
                             .where(Payment.user_id == caller.user_id)
                             .order_by(Payment.created_at.desc()).limit(limit)).all()
        return [_view(p, name) for p, name in rows]

    # --- status -----------------------------------------------------------------------

    def check(self, caller: Caller, payment_id: str) -> PaymentView:
        """The payment, brought up to date with Campay if it is not finished yet."""
        view = self.get((payment_id or "").strip(), caller)
        if view.status in OPEN and self.campay is not None:
            try:
                return self.reconcile(view)
            except CampayError as exc:
                # Campay unreachable: the payment stays as it is; the caller may ask again.
                log.warning("payment %s: cannot reach Campay: %s", view.payment_id, exc)
                return dataclasses.replace(view, message=f"{view.message} (Campay not "
                                           f"reachable right now: {exc.message})")
        return view

    def reconcile(self, view: PaymentView) -> PaymentView:
        """Ask Campay about an unfinished payment and apply the answer."""
        if view.transaction_ref and self.campay is not None:
            try:
                txn = self.campay.transaction(view.transaction_ref)
            except CampayNotFound:
                txn = None
            if txn is not None:
                self.apply(view.payment_id, txn)
                view = self.get(view.payment_id)
        if view.status in OPEN and self._expired(view):
            self._fail(view.payment_id, "expired: the payment was not approved on the phone "
                       f"within {self.options.expiry_s / 60:g} minutes", only_open=True)
            view = self.get(view.payment_id)
        return view

    def _expired(self, view: PaymentView) -> bool:
        return (utcnow() - view.created_at).total_seconds() > self.options.expiry_s

    def apply(self, payment_id: str, txn: Transaction) -> None:
        """Apply Campay's word on a transaction (the only source of a status change)."""
        if txn.status == SUCCESSFUL:
            with self.db.read() as s:
                p = s.get(Payment, payment_id)
                if p is None:
                    return
                expected, ext_ref = p.charged_xaf, p.external_reference
            mismatch = ""
            if txn.amount != expected:
                mismatch = f"Campay reports {txn.amount} XAF instead of {expected} XAF"
            elif txn.currency and txn.currency != "XAF":
                mismatch = f"Campay reports currency {txn.currency}"
            elif txn.external_reference and txn.external_reference != ext_ref:
                mismatch = "Campay's transaction belongs to another payment"
            if mismatch:
                log.error("payment %s: not credited: %s", payment_id, mismatch)
                self._fail(payment_id, f"not credited: {mismatch}; contact support",
                           only_open=True)
                return
            self._credit(payment_id, txn)
        elif txn.status == FAILED:
            reason = txn.reason or "the payment was declined or failed"
            self._fail(payment_id, reason, only_open=True, operator=txn.operator)

    def _credit(self, payment_id: str, txn: Transaction) -> None:
        now = utcnow()
        with self.db.write() as s:
            won = s.execute(
                update(Payment)
                .where(Payment.id == payment_id, Payment.credited_at.is_(None))
                .values(credited_at=now, status="completed", completed_at=now, updated_at=now,
                        transaction_ref=txn.reference,
                        operator=txn.operator or Payment.operator,
                        message="completed: storage added")
                .execution_options(synchronize_session=False)
            ).rowcount
            if won != 1:
                return  # someone else credited it (or it is being credited right now)
            p = s.get(Payment, payment_id)
            assert p is not None
            s.execute(update(User).where(User.id == p.user_id)
                      .values(storage_allocated=User.storage_allocated + p.storage_bytes)
                      .execution_options(synchronize_session=False))
            tier = s.get(StorageTier, p.tier_id)
            email = s.scalar(select(User.email).where(User.id == p.user_id))
            details = dict(payment_id=p.id, tier=tier.name if tier else "", provider=p.provider,
                           amount_xaf=p.charged_xaf, price_xaf=p.amount_xaf,
                           storage_bytes=p.storage_bytes, operator=txn.operator,
                           transaction_ref=txn.reference, code=txn.code,
                           demo_mode=bool(p.demo_mode))
            user_id, storage = p.user_id, p.storage_bytes
            name = tier.display_name if tier else "storage"
        log.info("payment %s completed: +%d bytes for user %s", payment_id, storage, user_id)
        self.events.emit("payment_completed",
                         f"{email} bought {name}: +{human_bytes(storage)} "
                         f"({details['amount_xaf']} XAF)", user_id, **details)

    def _fail(self, payment_id: str, message: str, *, only_open: bool,
              operator: str = "") -> None:
        now = utcnow()
        values: dict[str, Any] = {"status": "failed", "message": message[:500], "updated_at": now}
        if operator:
            values["operator"] = operator
        with self.db.write() as s:
            q = update(Payment).where(Payment.id == payment_id, Payment.credited_at.is_(None))
            if only_open:
                q = q.where(Payment.status.in_(OPEN))
            won = s.execute(q.values(**values)
                            .execution_options(synchronize_session=False)).rowcount
            if won != 1:
                return
            p = s.get(Payment, payment_id)
            assert p is not None
            tier = s.get(StorageTier, p.tier_id)
            details = dict(payment_id=p.id, tier=tier.name if tier else "", provider=p.provider,
                           amount_xaf=p.charged_xaf, reason=message, demo_mode=bool(p.demo_mode))
            user_id = p.user_id
        log.info("payment %s failed: %s", payment_id, message)
        self.events.emit("payment_failed", f"payment {payment_id[:8]} failed: {message}",
                         user_id, **details)

    # --- background -------------------------------------------------------------------

    def reconcile_open(self, limit: int = 200) -> int:
        """One pass over unfinished payments (oldest first); returns how many were looked at."""
        with self.db.read() as s:
            rows = s.execute(select(Payment, StorageTier.name)
                             .join(StorageTier, StorageTier.id == Payment.tier_id)
                             .where(Payment.status.in_(OPEN))
                             .order_by(Payment.updated_at).limit(limit)).all()
        for p, name in rows:
            try:
                self.reconcile(_view(p, name))
            except CampayUnavailable as exc:
                log.warning("reconciliation of payment %s: %s", p.id, exc)
                break  # Campay is down: try again on the next pass
            except CampayError as exc:
                log.warning("reconciliation of payment %s: %s", p.id, exc)
            except Exception:  # noqa: BLE001 - one bad row must not stop the loop
                log.exception("reconciliation of payment %s failed", p.id)
        return len(rows)

    # --- webhook ----------------------------------------------------------------------

    def handle_webhook(self, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Campay's notification: verify its signature, then confirm with Campay itself."""
        try:
            claims = verify_webhook_signature(str(params.get("signature") or ""),
                                              self.options.webhook_key)
        except WebhookSignatureError as exc:
            log.warning("webhook refused: %s", exc.message)
            return 403, {"ok": False, "message": exc.message}
        reference = str(params.get("reference") or claims.get("reference") or "")
        ext_ref = str(params.get("external_reference") or "")
        if claims.get("reference") and reference and claims["reference"] != reference:
            log.warning("webhook refused: signature is for another reference")
            return 403, {"ok": False, "message": "signature does not match the reference"}
        if not reference:
            return 400, {"ok": False, "message": "no reference"}
        with self.db.read() as s:
            conds = [Payment.transaction_ref == reference]
            if ext_ref:
                conds.append(Payment.external_reference == ext_ref)
            p = s.scalars(select(Payment).where(or_(*conds)).limit(1)).first()
            found = p is not None
            pid = p.id if p else ""
        if not found:
            return 404, {"ok": False, "message": "unknown payment"}
        if self.campay is None:
            return 503, {"ok": False, "message": NOT_CONFIGURED}
        try:
            txn = self.campay.transaction(reference)
        except CampayError as exc:
            # Answer non-2xx so Campay calls again; polling will also catch up.
            return 503, {"ok": False, "message": f"cannot confirm with Campay: {exc.message}"}
        self.apply(pid, txn)
        return 200, {"ok": True, "status": self.get(pid).status}


class Reconciler:
    """Runs ``reconcile_open`` every ``interval_s`` on a daemon thread."""

    def __init__(self, ledger: PaymentLedger, interval_s: float) -> None:
        self.ledger = ledger
        self.interval_s = max(0.05, interval_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                         name="payment-reconciler")

    def start(self) -> Reconciler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.ledger.reconcile_open()
            except CloudError as exc:
                log.warning("payment reconciliation: %s", exc.message)
            except Exception:  # noqa: BLE001 - keep the loop alive
                log.exception("payment reconciliation failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def _approve_message(amount: int, ussd: str) -> str:
    text = f"approve the payment of {amount} XAF on your phone"
    if ussd:
        text += f" (no prompt? dial {ussd})"
    return text


def _operator_matches(provider: str, operator: str) -> bool:
    op = operator.strip().upper()
    return (provider == phones.MTN_MOMO and op.startswith("MTN")) or (
        provider == phones.ORANGE_MONEY and op.startswith("ORANGE"))


def _cloud_error(exc: CampayError) -> CloudError:
    if isinstance(exc, CampayRejected):
        if exc.error_code == "ER301":
            return FailedPrecondition(exc.message)
        return InvalidArgument(exc.message)
    if isinstance(exc, CampayTimeout):
        return DeadlineExceeded(f"{exc.message}; nothing was charged unless your phone shows "
                                "a prompt (then the payment completes when approved)")
    if isinstance(exc, CampayAuthError):
        return Unavailable(f"payments are unavailable: {exc.message}")
    return Unavailable(f"payments are unavailable right now: {exc.message}")
