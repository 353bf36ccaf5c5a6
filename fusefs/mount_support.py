"""Whether this build can mount: pyfuse3 is the optional ``fuse`` extra.

A plain ``pip install cloudgrpc`` has the file commands but not pyfuse3. The mount's code
imports pyfuse3 only when it mounts, so both ``cloudgrpc`` (handing the mount's commands
over) and ``mount_cli`` (importing the daemon) turn that ImportError into the same line and
exit status instead of a traceback.
"""

from __future__ import annotations

MOUNT_MISSING = (
    "mount support is not installed in this build "
    "(install the fuse extra: pip install 'cloudgrpc[fuse]', which needs libfuse3-dev)"
)
MOUNT_MISSING_EXIT = 13
# What the mount imports and a plain install may lack (or fail to load: libfuse3.so absent).
MOUNT_MODULES = ("pyfuse3", "trio", "cloudgrpc_fusefs.mount_cli")


def is_missing_mount_support(exc: ImportError) -> bool:
    """True when ``exc`` says one of the mount's optional modules cannot be imported."""
    name = exc.name or ""
    return any(name == module or name.startswith(module + ".") for module in MOUNT_MODULES)
