"""StorageService: the caller's quota and usage."""

from __future__ import annotations

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc

from ..accounts import Accounts
from ..grpc_edge import rpc
from ..namespace import Namespace


class StorageServicer(pb_grpc.StorageServiceServicer):
    def __init__(self, accounts: Accounts, namespace: Namespace, chunk_size: int) -> None:
        self.accounts = accounts
        self.namespace = namespace
        self.chunk_size = chunk_size

    @rpc
    def GetStorageInfo(self, request: pb.StorageInfoRequest, context: grpc.ServicerContext
                       ) -> pb.StorageInfoResponse:
        caller = self.accounts.authenticate(request.session_token)
        allocated, used, count, trash, held = self.namespace.usage(caller)
        return pb.StorageInfoResponse(
            success=True, allocated_bytes=allocated, used_bytes=used,
            available_bytes=max(0, allocated - used - held),
            usage_percentage=round(100.0 * used / allocated, 2) if allocated else 0.0,
            chunk_size=self.chunk_size, file_count=count, trash_bytes=trash)
