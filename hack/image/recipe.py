"""What the image is, read from ``deploy/Containerfile``: the local build's one source of truth.

The Containerfile is for builders with a registry; the local build cannot run it, but it takes
from its final stage everything that decides what the image holds and how it starts: the base
(Debian suite and variant), ``ARG DEBIAN_PACKAGES``, ``ENV``, ``LABEL``, ``WORKDIR``, ``CMD``
and ``ENTRYPOINT``. Only the instructions that file uses are understood; anything else in the
final stage is refused, so a new instruction there cannot be silently left out of the local
build.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

from hack.image.errors import ImageBuildError

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "deploy" / "Containerfile"
VENV = "/opt/hybridnet"
"""Where both builds make the virtual environment (the Containerfile's ``python3 -m venv``)."""
BASE_IMAGE = re.compile(r"^docker\.io/library/debian:(?P<suite>[a-z]+)-slim$")
FINAL_STAGE_INSTRUCTIONS = ("ARG", "RUN", "COPY", "ENV", "LABEL", "WORKDIR", "CMD", "ENTRYPOINT")
"""RUN and COPY are what the local build does its own way (mmdebstrap, pip); the rest is config."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The final stage of the Containerfile, as the local build needs it."""

    suite: str
    packages: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    workdir: str
    cmd: tuple[str, ...]
    entrypoint: tuple[str, ...]
    runs: tuple[str, ...]
    """The RUN instructions' text, so that a test can check they still do what the local
    build does."""


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs: comments dropped, continuation lines joined."""
    parsed: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        parsed.append((keyword.upper(), arguments.strip()))
    if pending:
        raise ImageBuildError("Containerfile ends inside a continued line")
    return parsed


def _pairs(arguments: str, instruction: str) -> list[tuple[str, str]]:
    pairs = []
    for word in shlex.split(arguments):
        key, equals, value = word.partition("=")
        if not equals or not key:
            raise ImageBuildError(f"Containerfile {instruction}: expected KEY=VALUE, got {word!r}")
        pairs.append((key, value))
    return pairs


def _exec_form(arguments: str, instruction: str) -> tuple[str, ...]:
    try:
        words = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise ImageBuildError(f"Containerfile {instruction} must be a JSON list: {exc}") from exc
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ImageBuildError(f"Containerfile {instruction} must be a JSON list of strings")
    return tuple(words)


def parse(text: str) -> Recipe:
    """The final stage of a Containerfile's text."""
    parsed = instructions(text)
    starts = [i for i, (keyword, _) in enumerate(parsed) if keyword == "FROM"]
    if not starts:
        raise ImageBuildError("Containerfile has no FROM")
    base, *_ = parsed[starts[-1]][1].split()
    matched = BASE_IMAGE.match(base)
    if matched is None:
        raise ImageBuildError(f"final stage must start FROM debian:<suite>-slim, not {base!r}")
    given: dict[str, list[str]] = {keyword: [] for keyword in FINAL_STAGE_INSTRUCTIONS}
    for keyword, arguments in parsed[starts[-1] + 1 :]:
        if keyword not in given:
            raise ImageBuildError(f"the local build does not know Containerfile {keyword}")
        given[keyword].append(arguments)
    return Recipe(
        suite=matched["suite"],
        packages=_packages(given["ARG"]),
        env=tuple(pair for arguments in given["ENV"] for pair in _pairs(arguments, "ENV")),
        labels=tuple(pair for arguments in given["LABEL"] for pair in _pairs(arguments, "LABEL")),
        workdir=given["WORKDIR"][-1] if given["WORKDIR"] else "/",
        cmd=_exec_form(given["CMD"][-1], "CMD") if given["CMD"] else (),
        entrypoint=_exec_form(given["ENTRYPOINT"][-1], "ENTRYPOINT") if given["ENTRYPOINT"] else (),
        runs=tuple(given["RUN"]),
    )


def _packages(args: list[str]) -> tuple[str, ...]:
    """The one ARG of the final stage: DEBIAN_PACKAGES, the Debian packages to install."""
    pairs = [pair for arguments in args for pair in _pairs(arguments, "ARG")]
    if [name for name, _ in pairs] != ["DEBIAN_PACKAGES"] or not pairs[0][1].split():
        raise ImageBuildError(
            f"the final stage needs exactly one ARG, DEBIAN_PACKAGES, naming packages: {args}"
        )
    return tuple(pairs[0][1].split())


def load(path: Path = CONTAINERFILE) -> Recipe:
    """The recipe of the repository's Containerfile."""
    return parse(path.read_text())
