"""The route book: desired versus acknowledged per peer, and exactly the commands between."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridnet.bgp import commands
from hybridnet.bgp.book import RouteBook, Sent
from hybridnet.bgp.commands import Kind
from hybridnet.bgp.errors import RouteError
from hybridnet.bgp.model import NO_EXPORT, Family, Route

A, B = "198.18.0.1", "198.18.0.2"


def pod(host: int, hop: str = "198.18.0.11") -> Route:
    return Route.of(f"198.19.0.{host}/32", hop, {NO_EXPORT})


def prefixes(sent: list[Sent], kind: Kind) -> set[str]:
    return {str(p) for s in sent if s.command.kind is kind for p, _ in s.command.changes}


def answer_all(book: RouteBook, sent: list[Sent], ok: bool = True) -> None:
    for each in sent:
        book.answered(each.sequence, ok)


def test_desired_routes_are_announced_once_and_acknowledged() -> None:
    book = RouteBook([A])
    book.set_desired(A, [pod(1), pod(2)])
    sent = book.plan()
    assert prefixes(sent, Kind.ANNOUNCE) == {"198.19.0.1/32", "198.19.0.2/32"}
    assert len(sent) == 1, "one batched command"
    assert book.plan() == [], "nothing is sent twice while in flight"
    assert not book.converged(A)
    answer_all(book, sent)
    assert book.acked(A) == {pod(1), pod(2)} and book.count(A) == 2
    assert book.holds(A, pod(1)) and not book.holds(A, pod(1, hop="198.18.0.12"))
    assert not book.holds(A, pod(3))
    assert book.converged(A)
    assert book.plan() == []


def test_only_the_difference_is_sent() -> None:
    book = RouteBook([A])
    book.set_desired(A, [pod(1), pod(2)])
    answer_all(book, book.plan())
    moved = pod(2, hop="198.18.0.12")
    book.set_desired(A, [moved, pod(3)])
    sent = book.plan()
    assert prefixes(sent, Kind.WITHDRAW) == {"198.19.0.1/32"}
    assert prefixes(sent, Kind.ANNOUNCE) == {"198.19.0.2/32", "198.19.0.3/32"}
    answer_all(book, sent)
    assert book.acked(A) == {moved, pod(3)}


def test_a_prefix_can_change_again_while_its_last_command_is_in_flight() -> None:
    book = RouteBook([A])
    book.set_desired(A, [pod(1)])
    first = book.plan()
    book.set_desired(A, [])
    second = book.plan()
    assert prefixes(second, Kind.WITHDRAW) == {"198.19.0.1/32"}
    book.set_desired(A, [pod(1)])
    third = book.plan()
    assert prefixes(third, Kind.ANNOUNCE) == {"198.19.0.1/32"}
    answer_all(book, first + second)
    assert not book.converged(A), "the last command is still unanswered"
    answer_all(book, third)
    assert book.acked(A) == {pod(1)} and book.converged(A)


def test_a_refused_command_is_parked_until_retry() -> None:
    book = RouteBook([A])
    book.set_desired(A, [pod(1)])
    sent = book.plan()
    command = book.answered(sent[0].sequence, ok=False)
    assert command.kind is Kind.ANNOUNCE
    assert book.acked(A) == set()
    assert book.plan() == [], "not resent in a tight loop"
    assert book.retry_failed() == 1
    again = book.plan()
    assert prefixes(again, Kind.ANNOUNCE) == {"198.19.0.1/32"}
    answer_all(book, again)
    assert book.acked(A) == {pod(1)}


def test_a_parked_route_is_replanned_at_once_when_its_desired_route_changes() -> None:
    book = RouteBook([A])
    book.set_desired(A, [pod(1)])
    book.answered(book.plan()[0].sequence, ok=False)
    book.set_desired(A, [pod(1, hop="198.18.0.12")])
    assert prefixes(book.plan(), Kind.ANNOUNCE) == {"198.19.0.1/32"}


def test_a_refused_withdrawal_keeps_the_route_acknowledged() -> None:
    book = RouteBook([A])
    book.set_desired(A, [pod(1)])
    answer_all(book, book.plan())
    book.set_desired(A, [])
    book.answered(book.plan()[0].sequence, ok=False)
    assert book.acked(A) == {pod(1)}
    book.retry_failed()
    assert prefixes(book.plan(), Kind.WITHDRAW) == {"198.19.0.1/32"}


def test_resend_announces_the_whole_set_again_and_still_withdraws() -> None:
    book = RouteBook([A])
    book.set_desired(A, [pod(1), pod(2)])
    answer_all(book, book.plan())
    book.set_desired(A, [pod(1)])
    book.resend(A)
    sent = book.plan()
    assert prefixes(sent, Kind.ANNOUNCE) == {"198.19.0.1/32"}
    assert prefixes(sent, Kind.WITHDRAW) == {"198.19.0.2/32"}
    answer_all(book, sent)
    assert book.plan() == [] and book.converged(A)


def test_a_new_exabgp_gets_everything_and_the_lost_commands_are_returned() -> None:
    book = RouteBook([A, B])
    book.set_desired(A, [pod(1)])
    book.set_desired(B, [pod(2)])
    answer_all(book, book.plan())
    book.set_desired(A, [pod(1), pod(3)])
    unanswered = book.plan()
    lost = book.forget_everything()
    assert [c.line for c in lost] == [s.command.line for s in unanswered]
    assert book.acked(A) == set() and book.acked(B) == set()
    sent = book.plan()
    assert {s.command.peer for s in sent} == {A, B}
    assert prefixes(sent, Kind.ANNOUNCE) == {"198.19.0.1/32", "198.19.0.2/32", "198.19.0.3/32"}
    assert prefixes(sent, Kind.WITHDRAW) == set()


def test_peers_are_independent() -> None:
    book = RouteBook([A, B])
    book.set_desired(A, [pod(1)])
    sent = book.plan()
    assert {s.command.peer for s in sent} == {A}
    assert book.desired(B) == set()


def test_bad_input_is_refused() -> None:
    book = RouteBook([A])
    with pytest.raises(RouteError, match=re.escape("two routes for 198.19.0.1/32")):
        book.set_desired(A, [pod(1), pod(1, hop="198.18.0.12")])
    with pytest.raises(RouteError, match=re.escape("198.18.0.9 is not a configured BGP peer")):
        book.set_desired("198.18.0.9", [pod(1)])


def test_tracked_commands_are_numbered_and_answered_like_planned_ones() -> None:
    book = RouteBook([A])
    sent = book.track(commands.end_of_rib(A, Family.IPV4))
    assert book.answered(sent.sequence, ok=True).kind is Kind.END_OF_RIB


hops = st.sampled_from(["198.18.0.11", "198.18.0.12"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.integers(1, 40), hops, max_size=12),
            st.booleans(),
            st.booleans(),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_whatever_happens_answering_everything_done_converges_on_the_last_desired_set(
    steps: list[tuple[dict[int, str], bool, bool, bool]],
) -> None:
    """Desired sets change, commands are answered in order (some refused, some left in
    flight), sessions reset and ExaBGP restarts; once refusals are retried and every command
    is answered ``done``, ExaBGP holds exactly the last desired set."""
    book = RouteBook([A], per_command=5)
    pending: list[Sent] = []
    last: list[Route] = []
    for desired, refuse, reset, restart in steps:
        last = [pod(host, hop) for host, hop in desired.items()]
        book.set_desired(A, last)
        pending += book.plan()
        if pending:
            book.answered(pending.pop(0).sequence, ok=not refuse)
        if reset:
            book.resend(A)
        if restart:
            book.forget_everything()
            pending = []
    for _ in range(3):
        book.retry_failed()
        pending += book.plan()
        while pending:
            book.answered(pending.pop(0).sequence, ok=True)
    assert book.acked(A) == set(last)
    assert book.converged(A)
    assert book.plan() == []


@given(
    st.dictionaries(st.integers(1, 30), hops, max_size=12),
    st.dictionaries(st.integers(1, 30), st.one_of(st.none(), hops), max_size=12),
    st.booleans(),
)
def test_changing_some_prefixes_plans_what_setting_the_resulting_set_would(
    before: dict[int, str], changes: dict[int, str | None], acknowledged: bool
) -> None:
    """change_desired (only the prefixes given) and set_desired (the whole resulting set)
    leave the same desired set and plan the same commands, acknowledged or still in flight."""
    by_parts, whole = RouteBook([A]), RouteBook([A])
    for book in (by_parts, whole):
        book.set_desired(A, [pod(host, hop) for host, hop in before.items()])
        sent = book.plan()
        if acknowledged:
            answer_all(book, sent)
    resulting = dict(before)
    for host, hop in changes.items():
        if hop is None:
            resulting.pop(host, None)
        else:
            resulting[host] = hop
    by_parts.change_desired(
        A,
        {
            pod(host).prefix: None if hop is None else pod(host, hop)
            for host, hop in changes.items()
        },
    )
    whole.set_desired(A, [pod(host, hop) for host, hop in resulting.items()])
    assert by_parts.desired(A) == whole.desired(A)
    assert sorted(s.command.line for s in by_parts.plan()) == sorted(
        s.command.line for s in whole.plan()
    ), "the same commands (their order follows the order prefixes changed in)"


def test_a_change_under_another_prefix_is_refused_and_changes_nothing() -> None:
    book = RouteBook([A])
    book.set_desired(A, [pod(1)])
    with pytest.raises(RouteError, match=r"given for prefix 198\.19\.0\.2/32"):
        book.change_desired(A, {pod(3).prefix: pod(3), pod(2).prefix: pod(1)})
    assert book.desired(A) == {pod(1)}
