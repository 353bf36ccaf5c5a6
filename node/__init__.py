"""The storage node: a content-addressed chunk store on local disk, served over gRPC, that
registers and heartbeats with the gateway (console script ``cloudgrpc-node``)."""
