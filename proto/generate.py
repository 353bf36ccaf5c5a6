"""Regenerate the Python modules of the wire contract from ``cloud_storage.proto``.

Run ``python proto/generate.py`` after editing the contract; ``--check`` exits non-zero
when the committed modules differ from what the contract generates (CI runs it).

The proto file is compiled under the virtual path ``cloudgrpc_proto/`` so that the
generated ``_grpc`` module imports its sibling as ``cloudgrpc_proto.cloud_storage_pb2``,
which is the import name this folder is installed under.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
OUTPUTS = ("cloud_storage_pb2.py", "cloud_storage_pb2.pyi", "cloud_storage_pb2_grpc.py")


def generate(out_dir: pathlib.Path) -> None:
    from grpc_tools import protoc  # imported late: a build-time dependency only

    args = [
        "grpc_tools.protoc",
        f"-Icloudgrpc_proto={HERE}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"{HERE / 'cloud_storage.proto'}",
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the modules are stale")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        generate(out)
        stale = []
        for name in OUTPUTS:
            fresh = (out / "cloudgrpc_proto" / name).read_text()
            target = HERE / name
            if opts.check:
                if not target.exists() or target.read_text() != fresh:
                    stale.append(name)
            else:
                target.write_text(fresh)
    if stale:
        print("stale generated modules: " + ", ".join(stale), file=sys.stderr)
        print("run: python proto/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
