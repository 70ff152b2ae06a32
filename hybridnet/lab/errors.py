"""The lab's error type."""


class TestbedError(RuntimeError):
    """A lab operation failed; the message carries the command and what it printed."""

    __test__ = False  # not a test class, despite the name
