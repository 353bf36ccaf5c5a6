"""Delivering one-time codes by SMTP, or on the gateway console when no mail is set up.

SMTP security is ``ssl`` (implicit TLS, Gmail's 465 default), ``starttls`` or ``none``
(a relay on loopback, as the tests use). With nothing configured the code is printed on
the console: the original system's "test mode fallback", so a newcomer can sign in.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import sys
from email.message import EmailMessage

from cloudgrpc_proto.errors import Unavailable

from .config import Settings

log = logging.getLogger(__name__)


class OtpMailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def send_code(self, email: str, code: str, ttl_minutes: int) -> str:
        """Deliver ``code`` to ``email``; returns how it was delivered ("email" or "console")."""
        if not self.settings.mail_configured:
            line = f"[OTP] code for {email}: {code} (valid {ttl_minutes} min; no mail configured)"
            print(line, file=sys.stdout, flush=True)
            return "console"
        msg = EmailMessage()
        msg["Subject"] = f"Your CloudGrpc sign-in code: {code}"
        msg["From"] = self.settings.mail_from
        msg["To"] = email
        msg.set_content(
            f"Your CloudGrpc sign-in code is {code}.\n\n"
            f"It expires in {ttl_minutes} minutes and can be used once.\n"
            "If you did not ask for it, ignore this message.\n"
        )
        try:
            self._deliver(msg)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("otp mail to %s failed: %s", email, exc)
            raise Unavailable(f"could not send the code by mail: {exc}") from exc
        log.info("otp mailed to %s", email)
        return "email"

    def _deliver(self, msg: EmailMessage) -> None:
        s = self.settings
        timeout = 15
        if s.smtp_security == "ssl":
            with smtplib.SMTP_SSL(
                s.smtp_host, s.smtp_port, timeout=timeout, context=ssl.create_default_context()
            ) as smtp:
                self._login_and_send(smtp, msg)
        else:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=timeout) as smtp:
                if s.smtp_security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                self._login_and_send(smtp, msg)

    def _login_and_send(self, smtp: smtplib.SMTP, msg: EmailMessage) -> None:
        if self.settings.smtp_user and self.settings.smtp_password:
            smtp.login(self.settings.smtp_user, self.settings.smtp_password)
        smtp.send_message(msg)
