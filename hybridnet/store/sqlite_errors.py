"""sqlite3 failures as the store's typed errors, so callers decide by type and never see sqlite3.

The split follows what a caller can do about it: wait and retry (the file is busy, locked, out
of space, unreadable for now, or the store was closed), stop because this identity may not
write the file, or stop because the file itself is damaged or newer than this code.
"""

from __future__ import annotations

import sqlite3

from hybridnet.store.errors import Forbidden, StoreError, Unavailable


class Corrupt(StoreError):
    """The store file is damaged or is not a hybridnet store: retrying will not help."""


class UnsupportedSchema(StoreError):
    """The file was written by a newer hybridnet, whose layout this one does not know."""


_RETRY_LATER = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOLFS,
        sqlite3.SQLITE_SCHEMA,
    }
)
_NOT_ALLOWED = frozenset({sqlite3.SQLITE_PERM, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_AUTH})
_DAMAGED = frozenset(
    {
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_FORMAT,
        sqlite3.SQLITE_CONSTRAINT,
        sqlite3.SQLITE_MISMATCH,
    }
)


def translate(exc: sqlite3.Error, what: str) -> StoreError:
    """The typed error for ``exc``; ``what`` says what was being done ("cannot write ...")."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF  # extended codes carry the primary low
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    text = f"{what}: {exc} ({name})"
    if primary in _RETRY_LATER:
        return Unavailable(text)
    if primary in _NOT_ALLOWED:
        return Forbidden(text)
    if primary in _DAMAGED:
        return Corrupt(text)
    return StoreError(text)
