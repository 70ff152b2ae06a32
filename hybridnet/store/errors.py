"""Typed store errors: callers decide by type (retry, give up, report), never by message."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store failure."""


class NotFound(StoreError):
    """The object does not exist."""


class AlreadyExists(StoreError):
    """A create found an object of that name: the name is already claimed."""


class Conflict(StoreError):
    """An update or delete named a resourceVersion that is no longer current."""


class Invalid(StoreError):
    """The object was refused by validation; the message names the field(s)."""


class Forbidden(StoreError):
    """The caller's identity may not do this (RBAC)."""


class Gone(StoreError):
    """A watch asked for history that has been compacted away: relist, then watch again."""


class Unavailable(StoreError):
    """The store cannot be reached or is overloaded: try again later."""
