"""The speaker's supervision and API handling, against a stand-in ExaBGP (fake_exabgp.py).

The real relay runs between them, so the speaker's side is exercised as in production:
the socket, the relay's greeting, answers matched to commands, restarts. Each wait is for a
state the speaker or the stand-in reports, bounded generously.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hybridnet.bgp.errors import ExaBGPUnresponsive, PeerConfigError, RouteError, SpeakerError
from hybridnet.bgp.model import NO_EXPORT, Family, Peer, Route, SessionState
from hybridnet.bgp.speaker import Backoff, Speaker
from hybridnet.metrics import new_registry

FAKE = str(Path(__file__).with_name("fake_exabgp.py"))
A, B = "198.18.0.1", "198.18.0.2"
BOUND = 30.0


def pod(host: int, hop: str = "198.18.0.11") -> Route:
    return Route.of(f"198.19.0.{host}/32", hop, {NO_EXPORT})


def peer(address: str = A, **options: object) -> Peer:
    return Peer(ipaddress.ip_address(address), 65000, 65010, **options)  # type: ignore[arg-type]


class Harness:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp_path = tmp_path
        self.log = tmp_path / "fake.log"
        self.log.touch()
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("FAKE_EXABGP_LOG", str(self.log))
        self.speakers: list[Speaker] = []
        self.registry: CollectorRegistry = new_registry()

    def speaker(self, peers: list[Peer] | None = None, **options: object) -> Speaker:
        speaker = Speaker(
            peers or [peer()],
            "198.18.0.10",
            workdir=self.tmp_path / f"speaker{len(self.speakers)}",
            registry=self.registry,
            exabgp_command=[sys.executable, FAKE],
            **options,  # type: ignore[arg-type]
        )
        self.speakers.append(speaker)
        speaker.start()
        return speaker

    def commands(self, pid: int | None = None) -> list[tuple[int, int, str]]:
        """(fake's pid, commands waiting when it was read, line) for every command."""
        found = []
        for line in self.log.read_text().splitlines():
            who, waiting, text = line.split(" ", 2)
            if waiting.isdigit() and (pid is None or int(who) == pid):
                found.append((int(who), int(waiting), text))
        return found

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    made = Harness(tmp_path, monkeypatch)
    yield made
    for speaker in made.speakers:
        speaker.close()


def wait(speaker: Speaker, condition: Callable[[], bool], what: str) -> None:
    assert speaker.wait_until(condition, BOUND), f"not reached within {BOUND}s: {what}"


def established(speaker: Speaker, address: str = A) -> bool:
    return speaker.peer_states()[address].state is SessionState.ESTABLISHED


def test_routes_are_sent_batched_acknowledged_and_measured(harness: Harness) -> None:
    speaker = harness.speaker()
    wait(speaker, lambda: established(speaker), "the session is up")
    speaker.set_routes({pod(1), pod(2), pod(3)})
    assert not speaker.converged(), "the change is in the book as soon as set_routes returns"
    wait(speaker, speaker.converged, "ExaBGP acknowledged the routes")
    assert speaker.announced(A) == {pod(1), pod(2), pod(3)}
    announces = [text for _, _, text in harness.commands() if " announce attributes " in text]
    assert announces[-1] == (
        "neighbor 198.18.0.1 announce attributes next-hop 198.18.0.11 community [ 65535:65281 ]"
        " nlri 198.19.0.1/32 198.19.0.2/32 198.19.0.3/32"
    )
    status = speaker.peer_states()[A]
    assert (status.state, status.routes) == (SessionState.ESTABLISHED, 3)
    assert harness.metric("hybridnet_bgp_routes_announced", peer=A) == 3
    assert harness.metric("hybridnet_bgp_session_state", peer=A, state="Established") == 1
    assert harness.metric("hybridnet_bgp_session_state", peer=A, state="Stopped") == 0
    assert harness.metric("hybridnet_bgp_announce_latency_seconds_count", kind="announce") >= 1

    speaker.set_routes({pod(1)})
    wait(speaker, speaker.converged, "the withdrawal is acknowledged")
    assert speaker.announced(A) == {pod(1)}
    assert harness.metric("hybridnet_bgp_routes_announced", peer=A) == 1


def test_a_refused_command_is_logged_counted_and_retried(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAKE_EXABGP_REFUSE", "198.19.0.9/32")
    speaker = harness.speaker(retry_interval=0.2)
    refused = pod(9, hop="198.18.0.12")
    speaker.set_routes({pod(1), refused})
    # Sent at connection and again when the session comes up (whole set again); a third
    # refusal can only follow a retry.
    wait(
        speaker,
        lambda: harness.metric("hybridnet_bgp_command_failures_total", kind="announce") >= 3,
        "the refused route was tried again, and refused again",
    )
    assert sum("198.19.0.9/32" in text for _, _, text in harness.commands()) >= 3
    assert speaker.announced(A) == {pod(1)}
    assert not speaker.converged()
    errors = [r for r in caplog.records if r.getMessage() == "ExaBGP refused a command"]
    assert errors and errors[0].levelno == logging.ERROR
    assert "198.19.0.9/32" in errors[0].hybridnet_fields["command"]  # type: ignore[attr-defined]


def test_exabgp_killed_is_started_again_and_gets_every_route(harness: Harness) -> None:
    speaker = harness.speaker(backoff=Backoff(initial=0.05))
    speaker.set_routes({pod(1), pod(2)})
    wait(speaker, speaker.converged, "the routes are acknowledged")
    first = speaker.exabgp_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait(speaker, lambda: speaker.exabgp_pid not in (None, first), "a new ExaBGP runs")
    second = speaker.exabgp_pid
    wait(speaker, lambda: speaker.converged() and established(speaker), "it has every route")
    lines = [text for _, _, text in harness.commands(second)]
    assert any("nlri 198.19.0.1/32 198.19.0.2/32" in text for text in lines), lines
    assert harness.metric("hybridnet_bgp_exabgp_restarts_total") == 1


def test_quick_exits_are_restarted_with_a_doubling_delay(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAKE_EXABGP_EXIT", "3")
    caplog.set_level(logging.INFO, logger="hybridnet.bgp.speaker")
    speaker = harness.speaker(backoff=Backoff(initial=0.05, maximum=0.2))
    wait(
        speaker,
        lambda: harness.metric("hybridnet_bgp_exabgp_restarts_total") >= 4,
        "ExaBGP was restarted several times",
    )
    delays = [
        r.hybridnet_fields["delay"]  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "ExaBGP will be started again"
    ]
    assert delays[:4] == [0.05, 0.1, 0.2, 0.2]
    exits = [r for r in caplog.records if r.getMessage() == "ExaBGP exited"]
    assert exits[0].hybridnet_fields["code"] == 3  # type: ignore[attr-defined]
    assert speaker.peer_states()[A].state is SessionState.STOPPED


def test_a_session_reset_announces_everything_again_then_end_of_rib_alone(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXABGP_ANSWER_DELAY", "0.02")
    speaker = harness.speaker(per_command=2)
    speaker.set_routes({pod(host) for host in range(1, 8)})
    wait(speaker, speaker.converged, "the routes are acknowledged")
    pid = speaker.exabgp_pid
    assert pid is not None
    os.kill(pid, signal.SIGUSR1)

    def after_reset() -> list[tuple[int, int, str]]:
        text = harness.log.read_text()
        if f"{pid} reset" not in text:
            return []
        tail = text.split(f"{pid} reset\n", 1)[1]
        return [
            (int(who), int(waiting), line)
            for who, waiting, line in (each.split(" ", 2) for each in tail.splitlines())
        ]

    wait(
        speaker,
        lambda: sum(" eor " in line for _, _, line in after_reset()) == 2,
        "End-of-RIB was sent for both families after the reset",
    )
    commands = after_reset()
    announced = {
        prefix
        for _, _, line in commands
        if " announce attributes " in line
        for prefix in line.split(" nlri ", 1)[1].split()
    }
    assert announced == {f"198.19.0.{host}/32" for host in range(1, 8)}
    eors = [(waiting, line) for _, waiting, line in commands if " eor " in line]
    assert eors == [
        (0, "neighbor 198.18.0.1 announce eor ipv4 unicast"),
        (0, "neighbor 198.18.0.1 announce eor ipv6 unicast"),
    ], "each End-of-RIB arrived with nothing else unanswered"
    assert [line for _, _, line in commands][-2:] == [line for _, line in eors]


def test_no_more_than_the_window_is_unanswered(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXABGP_ANSWER_DELAY", "0.005")
    speaker = harness.speaker(window=3, per_command=1)
    wait(speaker, lambda: established(speaker), "up")
    speaker.set_routes({pod(host) for host in range(1, 31)})
    wait(speaker, speaker.converged, "30 single-route commands acknowledged")
    waiting = [count for _, count, text in harness.commands() if " announce " in text]
    assert len(waiting) >= 30
    assert max(waiting) <= 2, "the stand-in never held more than the window"
    assert max(waiting) >= 1, "commands were pipelined"


def test_a_family_a_peer_does_not_carry_is_not_sent_to_it(harness: Harness) -> None:
    speaker = harness.speaker([peer(A, families=frozenset({Family.IPV4})), peer(B)])
    v6 = Route.of("2001:db8:50::5/128", "2001:db8::b")
    speaker.set_routes({pod(1), v6})
    wait(speaker, speaker.converged, "acknowledged")
    assert speaker.announced(A) == {pod(1)}
    assert speaker.announced(B) == {pod(1), v6}


def test_set_routes_refuses_bad_input() -> None:
    speaker = Speaker([peer()], "198.18.0.10")
    with pytest.raises(RouteError, match=r"198\.18\.0\.9 is not a configured BGP peer"):
        speaker.set_routes([pod(1)], peers=["198.18.0.9"])
    with pytest.raises(RouteError, match="not a peer address"):
        speaker.set_routes([pod(1)], peers=["router"])
    with pytest.raises(RouteError, match="needs an explicit IPv6 next hop"):
        speaker.set_routes([Route.of("2001:db8:50::/64")])
    with pytest.raises(RouteError, match=r"two routes for 198\.19\.0\.1/32"):
        speaker.set_routes([pod(1), pod(1, hop="198.18.0.12")])
    assert speaker.announced(A) == set()
    speaker.close()


def test_bad_configuration_is_refused_by_the_constructor() -> None:
    with pytest.raises(PeerConfigError, match="listed twice"):
        Speaker([peer(), peer()], "198.18.0.10")
    with pytest.raises(PeerConfigError, match="must be an IPv4 address"):
        Speaker([peer()], "2001:db8::a")


def test_a_connection_from_another_process_is_dropped(harness: Harness) -> None:
    speaker = harness.speaker()
    wait(speaker, lambda: established(speaker), "the real relay is connected")
    intruder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    intruder.settimeout(BOUND)
    intruder.connect(str(speaker.workdir / "api.sock"))
    intruder.sendall(b"relay 1\n")
    assert intruder.recv(1) == b"", "the speaker closed it"
    intruder.close()
    speaker.set_routes({pod(1)})
    wait(speaker, speaker.converged, "the real relay still works")


def test_losing_the_relay_restarts_exabgp(harness: Harness) -> None:
    speaker = harness.speaker(backoff=Backoff(initial=0.05))
    wait(speaker, lambda: established(speaker), "up")
    first = speaker.exabgp_pid
    relay_pid = next(
        int(line.split()[2])
        for line in harness.log.read_text().splitlines()
        if line.startswith(f"{first} relay ")
    )
    os.kill(relay_pid, signal.SIGKILL)
    wait(speaker, lambda: speaker.exabgp_pid not in (None, first), "a new ExaBGP runs")
    wait(speaker, lambda: established(speaker), "its session is up")


def many(count: int) -> set[Route]:
    """``count`` /32 routes from 198.19.0.0 on, to one next hop (one command per 1,000)."""
    first = ipaddress.ip_address("198.19.0.0")
    return {Route.of(f"{first + index}/32", "198.18.0.11") for index in range(count)}


def settled(harness: Harness, speaker: Speaker) -> bool:
    """Every route acknowledged, the session up and its End-of-RIB markers (one per family)
    answered: nothing is in flight, so a stand-in stopped now owes no answer from before."""
    eor = harness.metric("hybridnet_bgp_announce_latency_seconds_count", kind="eor")
    families = len(speaker.peers[A].families)
    return speaker.converged() and established(speaker) and eor >= families


def given_up(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    ending = "; killing ExaBGP to start it again"
    return [r for r in caplog.records if r.getMessage().endswith(ending)]


def test_an_exabgp_that_stops_answering_is_killed_started_again_and_the_waiter_told(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The stand-in ExaBGP stopped (SIGSTOP): the relay still takes the commands, no answer
    comes. A caller waiting gets ExaBGPUnresponsive instead of waiting out its own bound; the
    stopped process is killed (SIGTERM would wait for a SIGCONT) and a new one gets the whole
    set, the change made while the old one hung included."""
    caplog.set_level(logging.INFO, logger="hybridnet.bgp.speaker")
    speaker = harness.speaker(backoff=Backoff(initial=0.05), answer_timeout=1.0)
    speaker.set_routes({pod(1), pod(2)})
    wait(speaker, lambda: settled(harness, speaker), "routes and End-of-RIB acknowledged")
    first = speaker.exabgp_pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)
    speaker.set_routes({pod(1), pod(2), pod(3)})
    with pytest.raises(ExaBGPUnresponsive, match="answered no command for 1s"):
        speaker.wait_until(speaker.converged, BOUND)

    assert harness.metric("hybridnet_bgp_exabgp_answer_timeouts_total") == 1
    (record,) = given_up(caplog)
    assert record.levelno == logging.ERROR
    details = record.hybridnet_fields  # type: ignore[attr-defined]
    assert (details["exabgp_pid"], details["unanswered"], details["oldest_kind"]) == (
        first,
        1,
        "announce",
    )
    assert (details["oldest_peer"], details["answer_timeout"]) == (A, 1.0)
    wait(speaker, lambda: speaker.exabgp_pid not in (None, first), "a new ExaBGP runs")
    second = speaker.exabgp_pid
    wait(speaker, lambda: speaker.converged() and established(speaker), "it has every route")
    exits = [r for r in caplog.records if r.getMessage() == "ExaBGP exited"]
    assert [r.hybridnet_fields["code"] for r in exits] == [-signal.SIGKILL]  # type: ignore[attr-defined]
    lines = [text for _, _, text in harness.commands(second)]
    assert any("nlri 198.19.0.1/32 198.19.0.2/32 198.19.0.3/32" in text for text in lines), lines
    assert speaker.announced(A) == {pod(1), pod(2), pod(3)}
    assert harness.metric("hybridnet_bgp_exabgp_restarts_total") == 1


def test_an_exabgp_that_stops_reading_does_not_hold_the_speaker(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A stopped ExaBGP reads nothing: the relay's pipe and then the socket fill (about
    220 KB here), and the commands of 30,000 routes (about 450 KB) cannot all be written. The
    write gives up after the answer timeout (a blocking one held the speaker's driver, and
    close(), for good), and the new ExaBGP gets every route."""
    routes = many(30_000)
    speaker = harness.speaker(backoff=Backoff(initial=0.05), answer_timeout=1.0)
    wait(speaker, lambda: settled(harness, speaker), "up, End-of-RIB acknowledged")
    first = speaker.exabgp_pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)
    speaker.set_routes(routes)
    with pytest.raises(ExaBGPUnresponsive, match="did not take our commands within 1s"):
        speaker.wait_until(speaker.converged, BOUND)
    assert harness.metric("hybridnet_bgp_exabgp_answer_timeouts_total") == 1
    assert len(given_up(caplog)) == 1
    wait(speaker, lambda: speaker.exabgp_pid not in (None, first), "a new ExaBGP runs")
    # Twice the set (at connect, and again when the session is up), through a stand-in that
    # logs every line: a few seconds, longer on a loaded machine, hence the wider bound.
    done = speaker.wait_until(lambda: speaker.converged() and established(speaker), 4 * BOUND)
    assert done, "the new ExaBGP acknowledged every route"
    assert speaker.announced(A) == routes


def test_the_answer_timeout_must_be_a_positive_number_of_seconds() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(SpeakerError, match="answer_timeout"):
            Speaker([peer()], "198.18.0.10", answer_timeout=bad)


def test_close_stops_exabgp_and_reports_every_peer_stopped(harness: Harness) -> None:
    speaker = harness.speaker()
    wait(speaker, lambda: established(speaker), "up")
    pid = speaker.exabgp_pid
    assert pid is not None
    speaker.close()
    assert speaker.exabgp_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert speaker.peer_states()[A].state is SessionState.STOPPED
    assert harness.metric("hybridnet_bgp_session_state", peer=A, state="Stopped") == 1
    with pytest.raises(SpeakerError):
        speaker.start()


def test_changing_some_prefixes_leaves_the_others_as_they_are(harness: Harness) -> None:
    speaker = harness.speaker([peer(A, families=frozenset({Family.IPV4})), peer(B)])
    wait(speaker, lambda: established(speaker), "the session is up")
    speaker.set_routes({pod(1), pod(2), pod(3)})
    wait(speaker, speaker.converged, "the first set acknowledged")
    v6 = Route.of("2001:db8:50::5/128", "2001:db8::b")
    moved = pod(3, hop="198.18.0.12")
    for name in (A, B):
        speaker.change_routes(
            {pod(1).prefix: None, moved.prefix: moved, pod(4).prefix: pod(4), v6.prefix: v6},
            name,
        )
    wait(speaker, speaker.converged, "the changes acknowledged")
    assert speaker.announced(A) == {pod(2), moved, pod(4)}, "IPv6 is not A's family"
    assert speaker.announced(B) == {pod(2), moved, pod(4), v6}
    held = speaker.acknowledged(A)
    assert moved in held and pod(2) in held
    assert pod(1) not in held and pod(3) not in held and v6 not in held, "only what A holds"
    speaker.change_routes({pod(2).prefix: None}, A)
    wait(speaker, speaker.converged, "the withdrawal acknowledged")
    assert pod(2) not in held, "a view of the book as it is now, not a copy"
    with pytest.raises(RouteError, match="needs an explicit IPv6 next hop"):
        speaker.change_routes(
            {ipaddress.ip_network("2001:db8:50::/64"): Route.of("2001:db8:50::/64")}, B
        )
    with pytest.raises(RouteError, match=r"198\.18\.0\.9 is not a configured BGP peer"):
        speaker.change_routes({pod(5).prefix: pod(5)}, "198.18.0.9")


def test_teardown_ends_every_session_after_what_is_queued(harness: Harness) -> None:
    """A handover's last step: the withdrawals queued before it go first, then a NOTIFICATION
    per Established peer (ExaBGP's teardown, Cease subcode 2), and it returns once every
    session has gone down."""
    speaker = harness.speaker([peer(A), peer(B)])
    wait(speaker, lambda: established(speaker, A) and established(speaker, B), "sessions up")
    speaker.set_routes({pod(1)})
    wait(speaker, speaker.converged, "the route acknowledged")
    speaker.set_routes([])
    assert speaker.teardown(timeout=10)
    lines = [text for _, _, text in harness.commands()]
    withdraw = max(i for i, t in enumerate(lines) if " withdraw " in t)
    teardowns = [i for i, t in enumerate(lines) if t.endswith(" teardown 2")]
    assert sorted(lines[i] for i in teardowns) == [
        f"neighbor {A} teardown 2",
        f"neighbor {B} teardown 2",
    ]
    assert min(teardowns) > withdraw
    states = speaker.peer_states()
    assert states[A].state is not SessionState.ESTABLISHED
    assert states[B].state is not SessionState.ESTABLISHED
