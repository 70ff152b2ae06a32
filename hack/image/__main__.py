"""``python -m hack.image``: build the image archive (or find it in the cache); print its path.

Progress goes to stderr, the archive's path alone to stdout, so that a script can take it:
``archive=$(python -m hack.image)``. ``--name`` prints the image's name instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hack.image.build import build, cache_dir
from hack.image.errors import ImageBuildError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.image", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--cache", type=Path, default=None, help=f"default: {cache_dir()}")
    parser.add_argument("--name", action="store_true", help="print the image's name, not its path")
    args = parser.parse_args(argv)
    try:
        image = build(cache=args.cache)
    except ImageBuildError as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 1
    print(image.name if args.name else image.archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
