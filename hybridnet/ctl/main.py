"""The entry point of ``hybridnet-ctl`` and ``kubectl-hybridnet``: parse, run one command,
turn every failure the user can act on into one line on stderr and an exit code
(hybridnet.ctl.errors): never a traceback for a typo, a missing file or an unreachable
cluster or daemon."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from hybridnet.ctl.arguments import parse, prog_name
from hybridnet.ctl.connection import Target, explain
from hybridnet.ctl.context import Context
from hybridnet.ctl.errors import EXIT_ERROR, EXIT_INTERRUPTED, CtlError
from hybridnet.store.errors import StoreError


def run(
    argv: Sequence[str],
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    prog: str = "hybridnet-ctl",
) -> int:
    """Run one command line; returns the exit code (argparse exits by itself on --help and
    on a malformed command line)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = parse(argv, prog)
    target = Target(args.kubeconfig, args.context, args.store_file)
    ctx = Context(target, args.ipam_namespace, out, err)
    try:
        code: int = args.handler(ctx, args)
        return code
    except CtlError as exc:
        err.write(f"{prog}: error: {exc}\n")
    except StoreError as exc:
        err.write(f"{prog}: error: {explain(exc, target)}\n")
    except KeyboardInterrupt:
        err.write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    finally:
        ctx.close()
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, prog=prog_name())


if __name__ == "__main__":
    sys.exit(main())
