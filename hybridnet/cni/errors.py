"""CNI errors: the spec's well-known codes and the JSON shape a failing plugin prints."""

from __future__ import annotations

from typing import Any

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
CONTAINER_UNKNOWN = 3
INVALID_ENV = 4
IO_ERROR = 5
DECODE_ERROR = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
"""STATUS only: the plugin cannot serve ADDs now."""
LIMITED_CONNECTIVITY = 51
"""STATUS only: ADDs work, but some connectivity is degraded."""
CHECK_FAILED = 100
"""hybridnet's own (100+ is plugin-specific): CHECK found the attachment differs."""
INTERNAL = 999
"""An unexpected failure inside the plugin or the daemon."""


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
