"""``hybridnet-manager`` on an embedded store whose first requests of one kind fail, as an API
server that is not ready (Unavailable) or never will be (Forbidden, NotFound) answers them: the
process the start-up tests run.

    python -m tests.unit.manager.failing_manager VERB PLURAL TIMES ERROR -- MANAGER-ARGS...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hybridnet.manager import main as manager
from hybridnet.store import errors
from hybridnet.store.interface import Store
from hybridnet.store.sqlite import SQLiteStore
from tests.unit.manager.stores import FailingStore

ERRORS: dict[str, type[errors.StoreError]] = {
    "Unavailable": errors.Unavailable,
    "Forbidden": errors.Forbidden,
    "NotFound": errors.NotFound,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("verb")
    parser.add_argument("plural")
    parser.add_argument("times", type=int)
    parser.add_argument("error", choices=sorted(ERRORS))
    parser.add_argument("manager_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    error = ERRORS[args.error]

    def open_store(manager_args: argparse.Namespace) -> Store:
        return FailingStore(
            SQLiteStore(manager_args.store),
            args.verb,
            args.plural,
            args.times,
            lambda: error(f"{args.verb} {args.plural}: injected {args.error}"),
        )

    manager.open_store = open_store  # type: ignore[assignment]
    rest = args.manager_args[1:] if args.manager_args[:1] == ["--"] else args.manager_args
    return manager.main(rest)


if __name__ == "__main__":
    sys.exit(main())
