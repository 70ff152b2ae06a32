"""A stand-in for ExaBGP's process API, for the speaker's unit tests (no root, no peer).

It reads the configuration the speaker rendered, starts the API process from its ``run``
line with pipes as ExaBGP does, reports each neighbour's FSM going to ESTABLISHED and the
session up, and answers every command ``done`` (``neighbor X teardown N``: then reports X's
session down, for good) (``error`` when the line contains one of the
comma-separated words in FAKE_EXABGP_REFUSE), FAKE_EXABGP_ANSWER_DELAY seconds after it
read it. Every command is appended to FAKE_EXABGP_LOG as ``<pid> <waiting> <line>``, where
``waiting`` counts the commands it had read and not answered yet. SIGUSR1 resets every
session (down, then up again); FAKE_EXABGP_EXIT=N makes it exit with N at once.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from types import FrameType

RESET = False


def on_usr1(signum: int, frame: FrameType | None) -> None:
    global RESET  # noqa: PLW0603 - a signal handler's one flag
    RESET = True


def event(peer: str, kind: str, **extra: object) -> str:
    neighbor = {"address": {"local": "198.18.0.10", "peer": peer}, **extra}
    return json.dumps({"exabgp": "5.0.0", "type": kind, "neighbor": neighbor})


def session_up(peer: str) -> list[str]:
    states = ["ACTIVE", "CONNECT", "OPENSENT", "OPENCONFIRM", "ESTABLISHED"]
    return [event(peer, "fsm", state=s) for s in states] + [event(peer, "state", state="up")]


def main(config_path: str) -> None:
    if os.environ.get("FAKE_EXABGP_EXIT"):
        sys.exit(int(os.environ["FAKE_EXABGP_EXIT"]))
    signal.signal(signal.SIGUSR1, on_usr1)
    with open(config_path) as source:
        config = source.read()
    run = re.search(r"^\s*run (.*);$", config, re.MULTILINE)
    assert run is not None
    peers = re.findall(r"^neighbor (\S+) \{", config, re.MULTILINE)
    refuse = [w for w in os.environ.get("FAKE_EXABGP_REFUSE", "").split(",") if w]
    delay = float(os.environ.get("FAKE_EXABGP_ANSWER_DELAY", "0"))
    log = open(os.environ["FAKE_EXABGP_LOG"], "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    relay = subprocess.Popen(
        shlex.split(run.group(1)), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert relay.stdin is not None and relay.stdout is not None
    log.write(f"{os.getpid()} relay {relay.pid}\n")

    def say(lines: list[str]) -> None:
        assert relay.stdin is not None
        relay.stdin.write("".join(f"{line}\n" for line in lines).encode())
        relay.stdin.flush()

    global RESET  # noqa: PLW0603
    say([line for peer in peers for line in session_up(peer)])
    received = b""
    waiting: deque[str] = deque()
    while True:
        if RESET:
            RESET = False
            log.write(f"{os.getpid()} reset\n")
            say([event(p, "state", state="down", reason="peer reset") for p in peers])
            say([event(p, "fsm", state="IDLE") for p in peers])
            say([line for peer in peers for line in session_up(peer)])
        ready, _, _ = select.select([relay.stdout], [], [], 0.02)
        if ready:
            chunk = os.read(relay.stdout.fileno(), 65536)
            if not chunk:
                return
            received += chunk
            while b"\n" in received:
                line, received = received.split(b"\n", 1)
                text = line.decode()
                log.write(f"{os.getpid()} {len(waiting)} {text}\n")
                waiting.append(text)
            continue
        if waiting:
            time.sleep(delay)
            text = waiting.popleft()
            say(["error" if any(word in text for word in refuse) else "done"])
            torn = re.match(r"neighbor (\S+) teardown \d+$", text)
            if torn:
                say([event(torn.group(1), "state", state="down", reason="teardown")])
                say([event(torn.group(1), "fsm", state="IDLE")])


if __name__ == "__main__":
    main(sys.argv[1])
