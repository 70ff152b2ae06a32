"""CNI errors: the JSON shape a failing plugin prints (the codes are in
:mod:`hybridnet.rpc.codes`, shared with the daemon)."""

from __future__ import annotations

from typing import Any


class CniError(Exception):
    """A failure the runtime sees as ``{"cniVersion", "code", "msg", "details"}`` on stdout."""

    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(f"[{code}] {msg}" + (f": {details}" if details else ""))
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        document: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            document["details"] = self.details
        return document
