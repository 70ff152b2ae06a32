"""The seconds each step of a CNI call took (the daemon's ``pod attached`` / ``pod detached``
log lines carry them): each step from the end of the one before, in the order they ran."""

from __future__ import annotations

from hybridnet.daemon.service import Phases


def test_each_step_is_timed_from_the_end_of_the_previous_one() -> None:
    ticks = iter([10.0, 10.0, 10.25, 12.5, 12.5004])
    phases = Phases(clock=lambda: next(ticks))
    for step in ("lock", "allocation", "attach", "record"):
        phases.end(step)
    assert phases.seconds == {"lock": 0.0, "allocation": 0.25, "attach": 2.25, "record": 0.0}
    assert list(phases.seconds) == ["lock", "allocation", "attach", "record"]
