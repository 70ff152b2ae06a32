"""The one exception a command raises for something the user can fix: it becomes one line on
stderr saying what is wrong and what to do, and a non-zero exit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

EXIT_OK = 0
EXIT_ERROR = 1
"""The command could not do what was asked (bad input, unreachable cluster or daemon)."""
EXIT_USAGE = 2
"""The command line itself is wrong (argparse's own code)."""
EXIT_FOUND = 3
"""A check ran and found problems (``ipam check``, ``node diagnose``)."""
EXIT_INTERRUPTED = 130


class CtlError(Exception):
    """What went wrong and what to do about it, in one line."""

    def __init__(self, problem: str, hint: str | None = None):
        self.problem = problem
        self.hint = hint
        joint = " " if problem.endswith(("?", ".", "!")) else ": "
        super().__init__(f"{problem}{joint}{hint}" if hint else problem)


def field_hint(problems: Sequence[str], flag_of_field: Mapping[str, str], done: str) -> str:
    """ "fix --cidr, --gateway; nothing was created": the flags behind the fields that the
    validation messages name (``spec.range.cidr: ...``), then what happened."""
    text = " ".join(problems)
    flags = dict.fromkeys(
        flag for field, flag in flag_of_field.items() if f"{field}:" in text or f"{field}[" in text
    )
    return f"fix {', '.join(flags)}; {done}" if flags else done
