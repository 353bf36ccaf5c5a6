"""AuthService: one-time codes, enrolment, sign-in, sessions and devices.

The client address (``context.peer()``) is passed to the accounts layer for its
per-address limits and each device's "last address"; refusals by a rate limit carry a
``retry-after`` trailer in seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.errors import RateLimited

from ..accounts import Accounts
from ..client_address import ClientAddresses
from ..grpc_edge import rpc

T = TypeVar("T")


def _epoch(value: dt.datetime | None) -> int:
    if value is None:
        return 0
    return int(value.replace(tzinfo=dt.UTC).timestamp())


def _with_retry_after(context: grpc.ServicerContext, call: Callable[[], T]) -> T:
    """Run ``call``; a RateLimited refusal also tells the client how long to wait."""
    try:
        return call()
    except RateLimited as exc:
        wait = getattr(exc, "retry_after_s", 0) or 30
        context.set_trailing_metadata((("retry-after", str(int(wait))),))
        raise


class AuthServicer(pb_grpc.AuthServiceServicer):
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        # Behind a trusted load balancer: the client's address, not the balancer's.
        self._addresses = ClientAddresses(accounts.settings.trusted_proxies)

    def _address(self, context: grpc.ServicerContext) -> str:
        return self._addresses.of(context)

    @rpc
    def SendOTP(self, request: pb.SendOTPRequest, context: grpc.ServicerContext
                ) -> pb.SendOTPResponse:
        how = _with_retry_after(context, lambda: self.accounts.send_otp(
            request.email, self._address(context)))
        where = "your email" if how == "email" else "the gateway console (no mail configured)"
        return pb.SendOTPResponse(success=True, message=f"OTP sent to {where}")

    @rpc
    def VerifyOTP(self, request: pb.VerifyOTPRequest, context: grpc.ServicerContext
                  ) -> pb.VerifyOTPResponse:
        token, left = _with_retry_after(context, lambda: self.accounts.verify_otp(
            request.email, request.otp, self._address(context)))
        return pb.VerifyOTPResponse(success=True, message="OTP verified",
                                    verification_token=token, attempts_left=left)

    @rpc
    def Enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext
               ) -> pb.EnrollResponse:
        issued = self.accounts.enroll(request.email, request.full_name,
                                      request.verification_token, request.device_name,
                                      self._address(context))
        gb = issued.storage_allocated / 1024**3
        return pb.EnrollResponse(
            success=True, message=f"Successfully enrolled {request.full_name}. "
            f"Allocated {gb:g} GB storage.", session_token=issued.session_token,
            user_id=issued.user_id, refresh_token=issued.refresh_token,
            expires_at=_epoch(issued.expires_at), storage_allocated=issued.storage_allocated)

    @rpc
    def Login(self, request: pb.LoginRequest, context: grpc.ServicerContext
              ) -> pb.LoginResponse:
        issued = self.accounts.login(request.email, request.verification_token,
                                     request.device_name, self._address(context))
        return pb.LoginResponse(success=True, message="Login successful",
                                session_token=issued.session_token, user_id=issued.user_id,
                                refresh_token=issued.refresh_token,
                                expires_at=_epoch(issued.expires_at))

    @rpc
    def Logout(self, request: pb.LogoutRequest, context: grpc.ServicerContext
               ) -> pb.LogoutResponse:
        self.accounts.logout(request.session_token, request.refresh_token)
        return pb.LogoutResponse(success=True, message="Logged out")

    @rpc
    def RefreshSession(self, request: pb.RefreshSessionRequest,
                       context: grpc.ServicerContext) -> pb.LoginResponse:
        issued = self.accounts.refresh(request.refresh_token, self._address(context))
        message = ("Session renewed" if issued.refresh_token else
                   "Session renewed; the refresh token was already rotated by another "
                   "client: use the one it stored")
        return pb.LoginResponse(success=True, message=message,
                                session_token=issued.session_token, user_id=issued.user_id,
                                refresh_token=issued.refresh_token,
                                expires_at=_epoch(issued.expires_at))

    @rpc
    def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.ServicerContext
               ) -> pb.WhoAmIResponse:
        caller = self.accounts.authenticate(request.session_token)
        return pb.WhoAmIResponse(success=True, user_id=caller.user_id, email=caller.email,
                                 full_name=caller.full_name,
                                 session_expires_at=_epoch(caller.session_expires_at))

    @rpc
    def ListDevices(self, request: pb.ListDevicesRequest, context: grpc.ServicerContext
                    ) -> pb.ListDevicesResponse:
        caller = self.accounts.authenticate(request.session_token)
        devices = [pb.DeviceInfo(device_id=d.device_id, name=d.name,
                                 created_at=_epoch(d.created_at),
                                 last_used_at=_epoch(d.last_used_at),
                                 last_address=d.last_address, expires_at=_epoch(d.expires_at),
                                 current=d.current)
                   for d in self.accounts.list_devices(caller)]
        return pb.ListDevicesResponse(success=True, devices=devices)

    @rpc
    def RevokeDevice(self, request: pb.RevokeDeviceRequest, context: grpc.ServicerContext
                     ) -> pb.RevokeDeviceResponse:
        caller = self.accounts.authenticate(request.session_token)
        ended = self.accounts.revoke_device(caller, request.device_id)
        return pb.RevokeDeviceResponse(
            success=True, sessions_ended=ended,
            message=f"Device signed out ({ended} session{'s' if ended != 1 else ''} ended)")
