"""C helpers are compiled at test time into a cache, once per source, with clear errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.netns import native

HELLO = '#include <stdio.h>\nint main(void) { puts("%s"); return 0; }\n'


@pytest.fixture
def no_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_a_missing_compiler_fails_with_the_packages_to_install(
    tmp_path: Path, no_compiler: None
) -> None:
    source = tmp_path / "hello.c"
    source.write_text(HELLO % "hello")
    with pytest.raises(native.NativeBuildError) as raised:
        native.build_program(source, tmp_path / "cache")
    message = str(raised.value)
    assert "no C compiler" in message
    assert "gcc libc6-dev" in message
    assert not (tmp_path / "cache").exists()


def test_a_source_that_does_not_compile_shows_the_compiler_error(tmp_path: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text("#include <hybridnet_no_such_header.h>\nint main(void) { return 0; }\n")
    cache = tmp_path / "cache"
    with pytest.raises(native.NativeBuildError) as raised:
        native.build_program(source, cache)
    message = str(raised.value)
    assert "hybridnet_no_such_header.h" in message
    assert "gcc libc6-dev" in message
    assert list(cache.iterdir()) == [], "a failed build must leave nothing in the cache"


def test_an_unchanged_source_is_built_once_and_a_changed_one_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "hello.c"
    cache = tmp_path / "cache"
    source.write_text(HELLO % "first")
    first = native.build_program(source, cache)
    assert subprocess.run([first], capture_output=True, text=True, check=True).stdout == "first\n"

    # Without a compiler on PATH, the cached build is still found: nothing is recompiled.
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    with monkeypatch.context() as patched:
        patched.setenv("PATH", str(empty))
        assert native.build_program(source, cache) == first

    source.write_text(HELLO % "second")
    second = native.build_program(source, cache)
    assert second != first
    assert subprocess.run([second], capture_output=True, text=True, check=True).stdout == (
        "second\n"
    )
    assert sorted(path.name for path in cache.iterdir()) == sorted([first.name, second.name])


def test_an_unusable_cache_directory_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "hello.c"
    source.write_text(HELLO % "hello")
    occupied = tmp_path / "a-file"
    occupied.write_text("")
    with pytest.raises(native.NativeBuildError, match="no build cache"):
        native.build_program(source, occupied / "cache")
