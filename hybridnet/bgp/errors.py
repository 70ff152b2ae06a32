"""The BGP speaker's errors: bad input refused at the boundary, and a speaker that cannot run."""

from __future__ import annotations


class BGPError(Exception):
    """Base of every error of hybridnet.bgp."""


class PeerConfigError(BGPError, ValueError):
    """A peer cannot be rendered into ExaBGP's configuration (the message names the peer and
    the field)."""


class RouteError(BGPError, ValueError):
    """A route is not one the speaker can announce to the peers it is meant for."""


class SpeakerError(BGPError):
    """The speaker was used wrongly (started twice, used after close)."""


class ExaBGPUnresponsive(BGPError):
    """ExaBGP left a command unanswered (or its commands unread) for the speaker's answer
    timeout. The speaker has killed it and starts a new one, which is told every route again;
    a caller waiting on the speaker meanwhile gets this instead of waiting on (wait_until,
    teardown) and may wait again for the new ExaBGP."""
