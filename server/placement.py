"""Choosing the nodes that hold a chunk: weighted rendezvous hashing.

Every node gets a score from the chunk's hash and its own id, weighted by its free space;
the chunk goes to the highest scores. The rule is deterministic (any gateway picks the same
nodes for the same chunk and the same cluster), moves little data when nodes come and go,
and fills emptier nodes faster. The full ranking doubles as the failover order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeView:
    """What placement needs to know of a node."""

    node_id: str
    name: str
    address: str
    free_bytes: int


def _unit(chunk: str, node_id: str) -> float:
    digest = hashlib.blake2b(f"{chunk}:{node_id}".encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return (value + 1) / float(2**64 + 1)  # in (0, 1)


def rank(chunk_sha256: str, nodes: Sequence[NodeView], needed_bytes: int = 0) -> list[NodeView]:
    """Nodes able to take ``needed_bytes``, best first."""
    scored = []
    for node in nodes:
        if node.free_bytes <= needed_bytes:
            continue
        weight = float(node.free_bytes)
        score = -weight / math.log(_unit(chunk_sha256, node.node_id))
        scored.append((score, node.name, node))
    scored.sort(key=lambda t: (-t[0], t[1]))
    return [n for _, _, n in scored]
