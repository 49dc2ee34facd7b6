"""Owner-only files and folders for everything the platform keeps: personal data (regional stores
and landing zones, the online store, the event stream, datasets and models), the warehouse and the
audit trail.

Folders are created 0700 and files 0600 whatever the process umask: the mode is set explicitly
after creating, because a umask only removes bits (under a umask of 000 the defaults would be
0777/0666). Files the platform writes itself are opened with :func:`open_private` (or
:func:`private_fd`), or replaced atomically with :func:`write_private`. Files a library creates
(DuckDB's database, SQLite's database) are made private by :func:`restrict_database` right after
opening, with their write-ahead logs and journals; a log the library creates later lies in a 0700
folder nobody else can enter, and the data directory itself becomes 0700 as soon as anything is
created in it (it holds the warehouse). :func:`restrict_umask` narrows the umask of a whole process
(``adp`` and the Dagster code location), so what libraries create is private from the start.

Only what belongs to this process's user is ever changed: a file or folder owned by someone else
keeps its mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from ai_data_platform import settings

FILE_MODE = 0o600
DIR_MODE = 0o700
PRIVATE_UMASK = 0o077
# The files DuckDB (``.wal``) and SQLite (``-wal``, ``-shm``, ``-journal``) keep next to a database.
DATABASE_SIBLING_SUFFIXES = (".wal", "-wal", "-shm", "-journal")

_OPEN_FLAGS = {
    "wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "xb": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
    "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "a+b": os.O_RDWR | os.O_CREAT | os.O_APPEND,
}


def _is_ours(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid()


def restrict(path: str | os.PathLike[str], mode: int = FILE_MODE) -> None:
    """Give an existing ``path`` exactly ``mode`` when it belongs to this user (missing: nothing)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if _is_ours(st) and stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def _restrict_fd(fd: int) -> None:
    st = os.fstat(fd)
    if _is_ours(st) and stat.S_IMODE(st.st_mode) != FILE_MODE:
        os.fchmod(fd, FILE_MODE)


def _restrict_data_dir(path: Path) -> None:
    """Make the data directory 0700 when ``path`` is it or lies below it."""
    root = settings.data_dir()
    path = path.resolve()
    if path == root or root in path.parents:
        restrict(root, DIR_MODE)


def make_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create the folder ``path`` and every missing parent, each 0700; return ``path``.

    Existing folders keep their mode (a mounted regional volume is the operator's), except the
    data directory, made 0700 whenever ``path`` lies in it.
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.is_dir() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
        restrict(folder, DIR_MODE)
    _restrict_data_dir(path)
    return path


def new_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create the folder ``path``, 0700, in an existing parent; FileExistsError if it exists (a
    staging folder must be new)."""
    path = Path(path)
    path.mkdir(mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def private_fd(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags)`` creating the file 0600 (an existing file of ours is made 0600)."""
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        _restrict_fd(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: str | os.PathLike[str], mode: str = "wb") -> BinaryIO:
    """Open ``path`` for binary writing (``wb``, ``xb``, ``ab`` or ``a+b``) as an owner-only file.

    The folder must exist (see :func:`make_private_dir`)."""
    try:
        flags = _OPEN_FLAGS[mode]
    except KeyError:
        raise ValueError(f"open_private mode must be one of {sorted(_OPEN_FLAGS)}, got {mode!r}") from None
    fd = private_fd(path, flags)
    try:
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: str | os.PathLike[str], data: bytes, *, temp_suffix: str = ".tmp") -> None:
    """Replace ``path``'s content atomically: an owner-only temp file next to it (``.<name><temp_suffix>``),
    fsynced, renamed into place. The folder is created (0700) when missing."""
    path = Path(path)
    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}{temp_suffix}")
    with open_private(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def restrict_database(path: str | os.PathLike[str]) -> None:
    """Make a database file a library created (DuckDB, SQLite) and its log and journal files 0600."""
    restrict(path)
    for suffix in DATABASE_SIBLING_SUFFIXES:
        restrict(f"{os.fspath(path)}{suffix}")


def restrict_tree(path: str | os.PathLike[str]) -> None:
    """Make every folder of ours under ``path`` (itself included) 0700 and every file 0600: for a
    tree a library fills with its own modes (Dagster's storage under ``dagster_home``)."""
    root = Path(path)
    restrict(root, DIR_MODE)
    for folder, folders, files in os.walk(root):
        for name in folders:
            restrict(Path(folder) / name, DIR_MODE)
        for name in files:
            restrict(Path(folder) / name, FILE_MODE)


def restrict_umask() -> int:
    """Narrow this process's umask so nothing it creates is readable by group or others (inherited
    by the processes it starts); returns the previous umask."""
    previous = os.umask(PRIVATE_UMASK)
    os.umask(previous | PRIVATE_UMASK)
    return previous
