"""Private files: the data dir is 0700 and every file riskstream writes is 0600, whatever the umask.

The store, case files, quarantine and delivery logs hold full event bodies (card numbers,
e-mail addresses): nobody but the engine's user may read them. Files are created with
mode 0600 and re-chmodded when they already existed with a wider mode; the process umask
is tightened to 077 while a store is written so that files DuckDB creates itself (the
database, its WAL, temporary files) are private too. Lock and quarantine files are opened
with ``O_NOFOLLOW``: a symbolic link planted in the data dir is refused, never written through.
"""

from __future__ import annotations

import os
from pathlib import Path

from riskstream.errors import StoreError

DIR_MODE = 0o700
FILE_MODE = 0o600


def tighten_umask() -> None:
    """Add 077 to the process umask (files created from now on are private to the user)."""
    old = os.umask(0o077)
    os.umask(old | 0o077)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make ``path`` itself 0700; returns it."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o777 != DIR_MODE:
            os.chmod(path, DIR_MODE)
    except OSError as exc:
        raise StoreError(f"cannot create data dir {str(path)!r}: {exc.strerror}") from None
    return path


def open_private(path: Path, flags: int, *, nofollow: bool = False) -> int:
    """``os.open`` creating ``path`` 0600 (an existing file is narrowed to 0600).

    ``nofollow`` refuses a symbolic link at ``path`` (``StoreError`` naming it).
    """
    extra = os.O_CREAT | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(path, flags | extra, FILE_MODE)
    except OSError as exc:
        if nofollow and path.is_symlink():
            raise StoreError(
                f"refusing to open {str(path)!r}: it is a symbolic link (the data dir must hold "
                "regular files only)"
            ) from None
        raise StoreError(f"cannot open {str(path)!r}: {exc.strerror}") from None
    narrow(fd)
    return fd


def narrow(fd: int) -> None:
    """Make the open file ``fd`` 0600 if it is wider (and ours)."""
    st = os.fstat(fd)
    if st.st_mode & 0o777 != FILE_MODE and st.st_uid == os.getuid():
        os.fchmod(fd, FILE_MODE)


def narrow_path(path: Path) -> None:
    """Make ``path`` 0600 if it exists, is a regular file, is ours and is wider."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if (
        st.st_uid == os.getuid()
        and not path.is_symlink()
        and path.is_file()
        and st.st_mode & 0o777 != FILE_MODE
    ):
        os.chmod(path, FILE_MODE)
