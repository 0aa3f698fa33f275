"""A ``dbm``-style key/value file on SQLite: the HTTP cache's storage (Scrapy's ``DbmCacheStorage``).

Scrapy's default ``FilesystemCacheStorage`` writes seven files per response and, on a 304, reads
three and rewrites all seven: on a re-crawl that was most of the time per page. Its
``DbmCacheStorage`` keeps everything in one key/value file through any ``dbm``-compatible module
(``HTTPCACHE_DBM_MODULE``), but this interpreter has neither ``dbm.gnu`` nor ``dbm.ndbm``, and
``dbm.dumb`` rewrites its index on every write. Python 3.13 ships this same idea as
``dbm.sqlite3``; this is that module's interface (``open(path, flag)`` → a mapping of bytes) for
3.11, on the standard library's ``sqlite3`` in WAL mode (a crash loses at most the last writes,
never the file — and a lost cache entry only means one full download).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, MutableMapping
from pathlib import Path


class error(OSError):
    pass


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


class Database(MutableMapping[bytes, bytes]):
    def __init__(self, path: str | Path, flag: str = "c") -> None:
        if flag not in {"r", "w", "c", "n"}:
            raise error(f"flag must be one of r, w, c, n (got {flag!r})")
        if flag in {"r", "w"} and not Path(path).exists():
            raise error(f"no such database: {path}")
        # One thread (the reactor's) uses it; autocommit, each write is its own small transaction.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: no fsync per commit
        self._db.execute("CREATE TABLE IF NOT EXISTS Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)")
        if flag == "n":
            self._db.execute("DELETE FROM Dict")

    def __getitem__(self, key: str | bytes) -> bytes:
        row = self._db.execute("SELECT value FROM Dict WHERE key = ?", (_bytes(key),)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def __setitem__(self, key: str | bytes, value: str | bytes) -> None:
        self._db.execute(
            "INSERT INTO Dict (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_bytes(key), _bytes(value)),
        )

    def __delitem__(self, key: str | bytes) -> None:
        if self._db.execute("DELETE FROM Dict WHERE key = ?", (_bytes(key),)).rowcount == 0:
            raise KeyError(key)

    def __iter__(self) -> Iterator[bytes]:
        return (row[0] for row in self._db.execute("SELECT key FROM Dict").fetchall())

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM Dict").fetchone()[0]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str | bytes):
            return False
        return self._db.execute("SELECT 1 FROM Dict WHERE key = ?", (_bytes(key),)).fetchone() is not None

    def close(self) -> None:
        self._db.close()


def open(path: str | Path, flag: str = "r", mode: int = 0o666) -> Database:
    return Database(path, flag)
