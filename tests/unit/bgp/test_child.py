"""ExaBGP's child process: output into our log as structured lines, exit reported, stop
escalating to SIGKILL, signals never sent once it has exited."""

from __future__ import annotations

import logging
import os
import sys
import threading

import pytest

from hybridnet.bgp.child import ExaBGPChild

SCRIPT = """
import signal, sys, time
print("reactor         loaded new configuration successfully", flush=True)
print("outgoing-1      connection to 198.18.0.1 closed", flush=True)
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("test            ignoring SIGTERM", flush=True)
    time.sleep(60)
sys.exit(3)
"""


def start(mode: str, exits: list[int], done: threading.Event) -> ExaBGPChild:
    def on_exit(code: int) -> None:
        exits.append(code)
        done.set()

    return ExaBGPChild(
        [sys.executable, "-c", SCRIPT, mode],
        env=dict(os.environ),
        cwd="/",
        log_level=logging.WARNING,
        on_exit=on_exit,
    )


def test_output_is_logged_with_its_source_and_the_exit_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exits: list[int] = []
    done = threading.Event()
    child = start("exit", exits, done)
    assert done.wait(30)
    assert exits == [3]
    assert not child.running()
    records = [r for r in caplog.records if r.name == "hybridnet.bgp.child"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "exabgp: loaded new configuration successfully"),
        (logging.WARNING, "exabgp: connection to 198.18.0.1 closed"),
    ]
    fields = records[1].hybridnet_fields  # type: ignore[attr-defined]
    assert fields == {"exabgp_pid": child.pid, "exabgp_source": "outgoing-1"}
    assert list(child.tail)[-1] == "outgoing-1      connection to 198.18.0.1 closed"
    child.signal(9)  # exited: nothing is sent to a PID that may be someone else's now


def test_stop_kills_a_child_that_ignores_sigterm(caplog: pytest.LogCaptureFixture) -> None:
    exits: list[int] = []
    done = threading.Event()
    child = start("stubborn", exits, done)
    ready = threading.Event()

    class Ready(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "exabgp: ignoring SIGTERM":
                ready.set()

    handler = Ready()
    logging.getLogger("hybridnet.bgp.child").addHandler(handler)
    try:
        assert ready.wait(30), "the child ignores SIGTERM from here on"
        assert child.stop(timeout=0.5) == -9
    finally:
        logging.getLogger("hybridnet.bgp.child").removeHandler(handler)
    assert done.wait(30) and exits == [-9]
    assert any(
        r.getMessage() == "ExaBGP did not stop on SIGTERM, killing it" for r in caplog.records
    )
