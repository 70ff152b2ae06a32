"""SIGTERM reaches a process waiting on its stop Event through hybridnet.shutdown: the handler
takes no lock (one that called Event.set() could deadlock on the Event the main thread was
inside), a watcher thread sets the Event. Run in a child process, signalled many times over
while its main thread waits and other threads churn Events."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import threading
    from hybridnet.shutdown import set_on_signal

    done = threading.Event()
    set_on_signal(done)
    def churn():
        while not done.is_set():
            threading.Event().wait(0.001)
    for _ in range(4):
        threading.Thread(target=churn, daemon=True).start()
    print("ready", flush=True)
    while not done.wait(0.001):  # enter and leave the Event's lock all the time
        pass
    print("stopped", flush=True)
    """
)


def test_a_signal_sets_the_stop_event_however_the_main_thread_is_waiting() -> None:
    for _ in range(10):
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=30)
        assert (child.returncode, out.strip()) == (0, "stopped")
