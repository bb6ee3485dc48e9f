"""SQLiteListener: learns that another connection committed to the database file.

On Linux it watches the database file and its ``-wal`` file with inotify: a commit writes one of
them, so the descriptor becomes readable at the moment of the commit (no polling, no delay). The
events are read and dropped; which rows changed is the claim's business. Elsewhere, or if inotify
is not available, ``PRAGMA data_version`` (which changes when another connection commits, and
reads no table) is polled every ``POLL_INTERVAL`` (2 ms). An in-memory database cannot be shared
with a worker and is refused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sqlite3
import struct

from django.core.exceptions import ImproperlyConfigured
from django.db import connections

# Seconds between two looks at data_version where inotify is unavailable.
POLL_INTERVAL = 0.002
# inotify(7) constants.
IN_MODIFY, IN_CLOSE_WRITE, IN_CREATE, IN_MOVED_TO = 0x2, 0x8, 0x100, 0x80
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
EVENT = struct.Struct("iIII")


def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    return libc if hasattr(libc, "inotify_init1") else None


class SQLiteListener:
    def __init__(self, alias: str) -> None:
        path = connections.settings[alias]["NAME"]
        if not path or str(path) == ":memory:" or "mode=memory" in str(path):
            raise ImproperlyConfigured(
                f"Database {alias!r} is an in-memory SQLite database; a worker runs in another "
                "process and cannot see it. Use a file path for NAME."
            )
        self.path = os.path.abspath(str(path))
        self.interval: float | None = None
        self._fd: int | None = None
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None

    def open(self) -> None:
        self.close()
        libc = _libc()
        if libc is not None:
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd >= 0:
                # The folder, not the files: the -wal file comes and goes with checkpoints.
                watched = libc.inotify_add_watch(fd, os.path.dirname(self.path).encode(),
                                                 IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO)
                if watched >= 0:
                    self._fd, self.interval = fd, None
                    return
                os.close(fd)
        self._conn = sqlite3.connect(self.path, check_same_thread=False)
        self._version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        self.interval = POLL_INTERVAL

    def fileno(self) -> int | None:
        return self._fd

    def drain(self) -> bool:
        if self._fd is not None:
            names = {os.path.basename(self.path), os.path.basename(self.path) + "-wal"}
            relevant = False
            while True:
                try:
                    data = os.read(self._fd, 65536)
                except BlockingIOError:
                    return relevant
                offset = 0
                while offset < len(data):
                    _, _, _, length = EVENT.unpack_from(data, offset)
                    raw = data[offset + EVENT.size: offset + EVENT.size + length]
                    relevant = relevant or raw.rstrip(b"\0").decode(errors="replace") in names
                    offset += EVENT.size + length
        assert self._conn is not None
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._version
        self._version = version
        return changed

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
