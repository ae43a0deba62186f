"""Is `--state` usable? Checked by `fisproxy run` before mitmproxy starts, so an unusable path
ends with one line naming it (exit code 2) instead of a traceback from the addon.

The check opens the file as the store will (SQLite, WAL journal) and writes once, rolled back: the folder can be created, the path is no directory, the file is SQLite (or new),
and both the file and its folder (the WAL and shared-memory files live beside it) are writable.
That is decided by trying, not by permission bits: root ignores them, and `chattr +i` or a
read-only mount stop even root.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

LOCK_TIMEOUT_SECONDS = 5.0  # another fisproxy on the same file holds the lock only briefly


def state_problem(path: Path) -> str | None:
    """Why `path` cannot hold the store, in a few words for a one-line error; None if it can.
    Creates the folder and (if missing) an empty database, as the store would."""
    if path.is_dir():
        return "is a directory, not a file"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        return f"{_first_file(path.parent)} is a file, not a folder"
    except OSError as e:
        return f"cannot create the folder {e.filename or path.parent}: {e.strerror}"
    try:
        db = sqlite3.connect(path, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None)
    except sqlite3.Error as e:
        return f"cannot be opened for writing ({e})"
    try:
        db.execute("PRAGMA schema_version").fetchone()  # reads the header
        db.execute("PRAGMA journal_mode=WAL").fetchone()
        # A write, rolled back: in WAL mode a read-only file still grants the write lock.
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE fisproxy_write_check (x)")
        finally:
            db.execute("ROLLBACK")
    except sqlite3.DatabaseError as e:
        text = str(e)
        if "not a database" in text:
            return "is not a SQLite database"
        if "readonly" in text or "read-only" in text:
            return f"is read-only ({text})"
        return f"cannot be opened for writing ({text})"
    finally:
        db.close()
    return None


def _first_file(folder: Path) -> Path:
    """The first existing non-folder on the way to `folder` (`a/file/b` -> `a/file`)."""
    for parent in (*reversed(folder.parents), folder):
        if parent.exists() and not parent.is_dir():
            return parent
    return folder
