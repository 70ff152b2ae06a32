"""``python -m hack.controlplane up|down --dir DIR``: a control plane left running for people.

``up`` starts etcd + kube-apiserver with the CRDs installed, prints the ``KUBECONFIG`` to use and
leaves them running after it exits (``make controlplane-up``); ``down`` stops what ``up``
started in that directory and removes it (``make controlplane-down``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hack.controlplane.controlplane import ControlPlane
from hack.controlplane.crds import DEFAULT_CRD_DIR
from hack.controlplane.errors import ControlPlaneError, WorkDirInUse
from hack.controlplane.state import STATE_FILE, is_ours, stop_recorded


def _up(work_dir: Path, crd_dir: Path | None, install: bool) -> int:
    work_dir = work_dir.resolve()
    state_path = work_dir / STATE_FILE
    if state_path.exists():
        try:
            state = json.loads(state_path.read_text())
        except ValueError as exc:
            raise ControlPlaneError(f"{state_path} is not a control plane's state: {exc}") from exc
        alive = [
            name
            for name, entry in state.get("processes", {}).items()
            if is_ours(int(entry["pid"]), str(entry["binary"]), work_dir)
        ]
        if alive:
            print(f"already running in {work_dir}: {', '.join(alive)}; run `down` first")
            return 1
        shutil.rmtree(work_dir)
    elif work_dir.exists() and any(work_dir.iterdir()):
        print(f"{work_dir} exists and is not a control plane's directory; pick another --dir")
        return 1
    started = time.monotonic()
    control_plane = ControlPlane(work_dir=work_dir)
    try:
        control_plane.start()
        crds = control_plane.install_crds(crd_dir) if install else []
    except WorkDirInUse:
        raise  # another `up` is starting here: its files are not ours to remove
    except BaseException:
        # Nothing half-built stays behind: the next `up` in this directory starts afresh.
        control_plane.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    pids = control_plane.pids
    control_plane.detach()
    print(f"control plane up in {time.monotonic() - started:.1f}s: {control_plane.server_url}")
    print(f"pids: {pids}; logs in {work_dir}")
    if crds:
        print(f"CRDs installed: {', '.join(crds)}")
    print(f"kubectl: {control_plane.kubectl}")
    print(f"kubeconfig: {control_plane.kubeconfig_path}")
    print(f"export KUBECONFIG={control_plane.kubeconfig_path}")
    return 0


def _down(work_dir: Path) -> int:
    work_dir = work_dir.resolve()
    if not (work_dir / STATE_FILE).exists():
        print(f"no control plane in {work_dir}")
        return 0
    stopped = stop_recorded(work_dir)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hack.controlplane", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start etcd + kube-apiserver and leave them running")
    up.add_argument("--dir", type=Path, required=True, help="work dir (kubeconfig, logs, pids)")
    up.add_argument("--crds", type=Path, default=None, help=f"CRD dir (default {DEFAULT_CRD_DIR})")
    up.add_argument("--no-crds", action="store_true", help="do not install CRDs")
    down = commands.add_parser("down", help="stop what `up` started in --dir and remove it")
    down.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return _up(args.dir, args.crds, not args.no_crds)
        return _down(args.dir)
    except ControlPlaneError as exc:
        print(f"controlplane: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
