"""One advisory lock on a file, shared by every process that opens the same path (``flock``).

Used where several processes append to the same files under ``$ADP_DATA_DIR``: the audit log, the
audit sensor's tick, the file transport's segments. The lock is released when the block ends or
the process dies, so a killed writer never leaves it held. The lock file and its folders are
owner-only.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ai_data_platform.private_files import make_private_dir, open_private


@contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or ``shared``) lock on ``path`` (created if missing) for the block."""
    make_private_dir(path.parent)
    with open_private(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
