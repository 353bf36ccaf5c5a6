"""The mount's VFS: its view of the tree and pending changes, tested without FUSE.

``VFS`` (core.py) does every filesystem operation on plain values (values.py); the pyfuse3
adapter (``fusefs/filesystem.py``) only translates kernel requests to it and its answers
and errors back. Own changes on the change feed are told apart in own_changes.py.
"""

from .core import VFS
from .values import (
    AttrChanges,
    Attributes,
    Caller,
    DirEntry,
    FsError,
    FsStats,
    Kernel,
    NoKernel,
    Opened,
    Options,
)

__all__ = [
    "VFS", "AttrChanges", "Attributes", "Caller", "DirEntry", "FsError", "FsStats", "Kernel",
    "NoKernel", "Opened", "Options",
]
