"""Entry point of ``hybridnet-cni`` (installed as ``/opt/cni/bin/hybridnet``).

Reads the environment and stdin, dispatches, prints the result (exit 0) or the CNI error JSON
(exit 1). Never a traceback: an unexpected exception is answered as code 999 with its message,
and a one-line account goes to stderr for the runtime's logs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from hybridnet.cni import commands
from hybridnet.cni.config import peek_version
from hybridnet.cni.env import read_env
from hybridnet.cni.errors import CniError
from hybridnet.rpc.codes import INTERNAL, IO_ERROR


def run(environ: Mapping[str, str], stdin: bytes, out: TextIO, err: TextIO) -> int:
    """One plugin invocation; returns the exit code."""
    try:
        env = read_env(environ)
        document = commands.dispatch(env, stdin)
    except CniError as exc:
        return _fail(exc, stdin, out, err)
    except Exception as exc:  # the runtime must get CNI error JSON, always
        origin = _origin(exc)
        return _fail(
            CniError(INTERNAL, f"{type(exc).__name__}: {exc}", f"internal error{origin}"),
            stdin,
            out,
            err,
        )
    if document is not None:
        _write(out, document)
    return 0


def _origin(exc: BaseException) -> str:
    """Where an exception was raised (file:line of the innermost frame), for the details."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""


def _fail(error: CniError, stdin: bytes, out: TextIO, err: TextIO) -> int:
    _write(out, error.to_json(peek_version(stdin)))
    try:
        err.write(f"hybridnet: {error}\n")
        err.flush()
    except OSError:
        pass
    return 1


def _write(out: TextIO, document: dict[str, Any]) -> None:
    try:
        out.write(json.dumps(document) + "\n")
        out.flush()
    except OSError:  # the runtime went away; nothing left to tell it
        pass


def main() -> int:
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as exc:
        return _fail(CniError(IO_ERROR, "cannot read stdin", str(exc)), b"", sys.stdout, sys.stderr)
    return run(os.environ, stdin, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
