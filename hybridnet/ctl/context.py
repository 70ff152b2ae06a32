"""What every command is handed: the store (opened on first use), the IPAM namespace, and
where to print."""

from __future__ import annotations

import dataclasses
from typing import TextIO

from hybridnet.ctl.connection import Target, open_store
from hybridnet.ctl.output import Column, Format, Record, render
from hybridnet.store.interface import Store


@dataclasses.dataclass
class Context:
    target: Target
    ipam_namespace: str
    stdout: TextIO
    stderr: TextIO
    _store: Store | None = None

    def store(self) -> Store:
        """The store, opened on first use (``completion`` and argument errors never open it)."""
        if self._store is None:
            self._store = open_store(self.target)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def show(self, data: list[Record] | Record, columns: list[Column], fmt: Format) -> None:
        self.stdout.write(render(data, columns, fmt))

    def say(self, text: str) -> None:
        """A result line for people (``network/x created``)."""
        self.stdout.write(text + "\n")

    def note(self, text: str) -> None:
        """Something beside the result (``no subnets found``), on stderr as kubectl does."""
        self.stderr.write(text + "\n")
