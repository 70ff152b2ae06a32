"""The end every ``create`` command shares: refuse with what validation found, or write the
object (or only say it is valid, with ``--dry-run``)."""

from __future__ import annotations

from collections.abc import Mapping

from hybridnet.api.meta import Resource
from hybridnet.ctl.context import Context
from hybridnet.ctl.errors import CtlError, field_hint


def create_checked(
    ctx: Context,
    obj: Resource,
    problems: list[str],
    flag_of_field: Mapping[str, str],
    dry_run: bool,
) -> int:
    """Nothing is written unless ``problems`` is empty; the error names the flags to fix."""
    kind = obj.KIND.kind.lower()
    name = obj.metadata.name
    if problems:
        raise CtlError(
            "; ".join(problems), field_hint(problems, flag_of_field, "nothing was created")
        )
    if dry_run:
        ctx.say(f"{kind}/{name} is valid (dry run: nothing created)")
        return 0
    ctx.store().create(obj)
    ctx.say(f"{kind}/{name} created")
    return 0
