"""NodeService: storage nodes register, heartbeat and leave.

Every call needs the cluster secret, and all but a name's first registration the node's own
key (see ``NodeRegistry``); refusals are PERMISSION_DENIED.
"""

from __future__ import annotations

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.errors import NotFound

from ..grpc_edge import rpc
from ..node_registry import NodeRegistry


class NodeServicer(pb_grpc.NodeServiceServicer):
    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry

    @rpc
    def RegisterNode(self, request: pb.RegisterNodeRequest, context: grpc.ServicerContext
                     ) -> pb.RegisterNodeResponse:
        node_id, issued_key = self.registry.register(
            request.name, request.host, request.port, request.capacity_bytes,
            request.used_bytes, request.chunk_count, request.cpu_cores, request.cluster_secret,
            request.node_key)
        return pb.RegisterNodeResponse(
            success=True, message=f"node {request.name} registered", node_id=node_id,
            node_key=issued_key,
            heartbeat_interval_s=max(1, round(self.registry.settings.heartbeat_interval_s))
            if self.registry.settings.heartbeat_interval_s >= 1 else 0)

    @rpc
    def Heartbeat(self, request: pb.HeartbeatRequest, context: grpc.ServicerContext
                  ) -> pb.HeartbeatResponse:
        try:
            self.registry.heartbeat(request.node_id, request.used_bytes, request.chunk_count,
                                    request.capacity_bytes, request.cluster_secret,
                                    list(request.corrupt_chunks), request.node_key,
                                    logical=request.logical_bytes)
        except NotFound:
            return pb.HeartbeatResponse(success=False, message="unknown node", reregister=True)
        return pb.HeartbeatResponse(success=True)

    @rpc
    def DeregisterNode(self, request: pb.DeregisterNodeRequest,
                       context: grpc.ServicerContext) -> pb.DeregisterNodeResponse:
        self.registry.deregister(request.node_id, request.cluster_secret, request.node_key)
        return pb.DeregisterNodeResponse(success=True, message="node deregistered")
