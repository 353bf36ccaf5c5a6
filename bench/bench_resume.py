"""How much an interrupted upload sends again when it is resumed.

Uploads a file through the shared client library (the code path of ``cloudgrpc upload``),
cuts the stream off after a given share of it, then uploads the same file again and
prints what travelled the second time (bytes sent) against what the gateway already held
(chunks sent as references). Then appends 1 MiB and uploads once more.

    python bench/bench_resume.py [--size-mib 50] [--cut 0.5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloudgrpc_proto.client import CloudClient  # noqa: E402
from cloudgrpc_proto.errors import CloudError  # noqa: E402
from cloudgrpc_proto.transfer import UploadStats  # noqa: E402
from tests.cluster import Cluster  # noqa: E402


class Cut(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=50)
    parser.add_argument("--cut", type=float, default=0.5, help="share sent before the cut")
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cloudgrpc-resume-"))
    cluster = Cluster(root, env={"LOG_LEVEL": "WARNING"})
    try:
        cluster.start()
        acct = cluster.sign_up("resume@example.com", "Resume")
        client = CloudClient(cluster.address, session_token=acct.token)
        src = root / "big.iso"
        src.write_bytes(os.urandom(opts.size_mib * 1024 * 1024 + 123))
        size = src.stat().st_size
        limit = int(size * opts.cut)

        sent = 0

        def cut_off(more: int) -> None:
            nonlocal sent
            sent += more
            if sent >= limit:
                raise Cut()

        try:
            client.upload(src, filename="big.iso", progress=cut_off)
            print("the upload finished before the cut", file=sys.stderr)
            return 1
        except (Cut, CloudError):
            pass
        time.sleep(0.5)  # chunks in flight at the cut land or fail
        assert not [f for f in client.list_files().files if f.filename == "big.iso"]
        stats = UploadStats()
        t = time.perf_counter()
        client.upload(src, filename="big.iso", stats=stats)
        resumed_s = time.perf_counter() - t
        print(f"file {size / 1e6:.1f} MB, cut after {limit / 1e6:.1f} MB")
        print(f"resumed upload: sent {stats.bytes_sent / 1e6:.1f} MB in {stats.chunks_sent} "
              f"chunks, referenced {stats.bytes_referenced / 1e6:.1f} MB in "
              f"{stats.chunks_referenced} chunks already on the nodes, {resumed_s:.2f} s")
        with src.open("ab") as f:
            f.write(os.urandom(1024 * 1024))
        again = UploadStats()
        client.upload(src, filename="big.iso", replace_existing=True, stats=again)
        print(f"after appending 1 MiB: sent {again.bytes_sent / 1e6:.1f} MB, referenced "
              f"{again.bytes_referenced / 1e6:.1f} MB")
        client.close()
        return 0
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    sys.exit(main())
