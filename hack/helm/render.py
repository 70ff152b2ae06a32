"""``python -m hack.helm.render [--check]``: write deploy/'s plain manifests from the chart, or
(with --check) only say which ones differ from it and exit 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hack.helm.chart import DEPLOY_DIR, HelmError, build_helm, differences, plain_manifests, write


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.helm.render", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = parser.parse_args(argv)
    try:
        files = plain_manifests(build_helm().helm)
    except HelmError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    if args.check:
        wrong = differences(files)
        for line in wrong:
            print(f"deploy/{line}", file=sys.stderr)
        return 1 if wrong else 0
    for path in write(files):
        print(f"wrote {DEPLOY_DIR.name}/{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
