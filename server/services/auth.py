"""AuthService: one-time codes, enrolment, sign-in, sessions."""

from __future__ import annotations

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.errors import RateLimited

from ..accounts import Accounts
from ..grpc_edge import rpc


def _epoch(value) -> int:  # type: ignore[no-untyped-def]
    import datetime as dt

    return int(value.replace(tzinfo=dt.UTC).timestamp())


class AuthServicer(pb_grpc.AuthServiceServicer):
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    @rpc
    def SendOTP(self, request: pb.SendOTPRequest, context: grpc.ServicerContext
                ) -> pb.SendOTPResponse:
        try:
            how = self.accounts.send_otp(request.email)
        except RateLimited as exc:
            context.set_trailing_metadata((("retry-after", "".join(
                ch for ch in exc.message if ch.isdigit()) or "30"),))
            raise
        where = "your email" if how == "email" else "the gateway console (no mail configured)"
        return pb.SendOTPResponse(success=True, message=f"OTP sent to {where}")

    @rpc
    def VerifyOTP(self, request: pb.VerifyOTPRequest, context: grpc.ServicerContext
                  ) -> pb.VerifyOTPResponse:
        token, left = self.accounts.verify_otp(request.email, request.otp)
        return pb.VerifyOTPResponse(success=True, message="OTP verified",
                                    verification_token=token, attempts_left=left)

    @rpc
    def Enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext
               ) -> pb.EnrollResponse:
        issued = self.accounts.enroll(request.email, request.full_name,
                                      request.verification_token, request.device_name)
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
                                     request.device_name)
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
        issued = self.accounts.refresh(request.refresh_token)
        return pb.LoginResponse(success=True, message="Session renewed",
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
