"""ExaBGP's API lines (as ExaBGP 5.0.15 wrote them to the relay in the lab) parsed."""

from __future__ import annotations

from hybridnet.bgp import api
from hybridnet.bgp.model import SessionState

HEAD = '{ "exabgp": "5.0.0", "time": 1796128860.09, "host" : "vm", "pid" : 17757, "ppid" : 17755, '
NEIGHBOR = (
    '"neighbor": { "address": { "local": "198.18.0.10", "peer": "198.18.0.1" }, '
    '"asn": { "local": 65010, "peer": 65000 }, "router-id": "198.18.0.10" '
)


def test_answers() -> None:
    assert api.parse("done") == api.Answer(ok=True)
    assert api.parse("error\n") == api.Answer(ok=False)
    assert api.parse("shutdown") == api.ShuttingDown()


def test_fsm_changes() -> None:
    line = HEAD + '"counter": 5, "type": "fsm", ' + NEIGHBOR + ', "state": "OPENSENT" } }'
    assert api.parse(line) == api.StateChange("198.18.0.1", SessionState.OPEN_SENT)
    unknown = line.replace("OPENSENT", "DANCING")
    assert isinstance(api.parse(unknown), api.Unrecognised)


def test_session_up_and_down() -> None:
    up = HEAD + '"counter": 8, "type": "state", ' + NEIGHBOR + ', "state": "up" } }'
    assert api.parse(up) == api.SessionUp("198.18.0.1")
    down = (
        HEAD
        + '"type": "state", '
        + NEIGHBOR
        + ', "state": "down", "reason": "closing connection" } }'
    )
    assert api.parse(down) == api.SessionDown("198.18.0.1", "closing connection")
    connected = up.replace('"up"', '"connected"')
    assert isinstance(api.parse(connected), api.Unrecognised)


def test_notifications_name_the_error() -> None:
    line = (
        HEAD + '"counter": 7, "type": "notification", ' + NEIGHBOR + ', "direction": "receive", '
        '"notification": { "code": 2, "subcode": 2, "data": "0x0000FE4B", "message": "" }  } }'
    )
    message = api.parse(line)
    assert message == api.Notification("198.18.0.1", "receive", 2, 2)
    assert isinstance(message, api.Notification)
    assert message.describe() == "notification received: OPEN message error: bad peer AS (2/2)"
    assert api.Notification("x", "send", 6, 99).describe() == ("notification sent: cease (6/99)")
    assert api.Notification("x", "send", 77, 1).describe() == (
        "notification sent: unknown error (77/1)"
    )


def test_peer_addresses_are_canonical() -> None:
    line = (
        HEAD + '"type": "fsm", "neighbor": { "address": { "local": "2001:db8::a", '
        '"peer": "2001:DB8:0::1" }, "state": "IDLE" } }'
    )
    assert api.parse(line) == api.StateChange("2001:db8::1", SessionState.IDLE)


def test_goodbye_and_anything_else() -> None:
    goodbye = HEAD + '"type": "notification", "notification": "shutdown" }'
    assert api.parse(goodbye) == api.ShuttingDown()
    for line in ["{ not json", "[1, 2]", '{"type": "fsm"}', "neighbor 1.2.3.4 up", ""]:
        assert isinstance(api.parse(line), api.Unrecognised), line
