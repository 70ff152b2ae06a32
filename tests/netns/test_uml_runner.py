"""The user-mode-linux runner carries a guest test's pass, failure and output back out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.netns import uml

GUEST_TESTS = """
import os, subprocess

def test_runs_in_the_uml_kernel_with_8021q():
    assert os.environ.get("HYBRIDNET_UML_GUEST") == "1"
    modules = open("/proc/modules").read()
    assert "8021q" in modules, modules

def test_fails_on_purpose():
    print("guest says hello")
    assert 1 + 1 == 3, "deliberate failure"
"""


@pytest.fixture
def guest_tests(tmp_path: Path) -> Path:
    if uml.host_has_8021q():
        pytest.skip("this kernel has 8021q natively: user-mode-linux is not used here")
    if shutil.which(uml.UML_KERNEL) is None:
        pytest.skip("user-mode-linux is not installed")
    path = tmp_path / "test_guest.py"
    path.write_text(GUEST_TESTS)
    return path


@pytest.mark.root
def test_a_passing_guest_test_passes(guest_tests: Path) -> None:
    outcome = uml.run_in_guest(f"{guest_tests}::test_runs_in_the_uml_kernel_with_8021q")
    assert outcome.status == "passed", outcome.output


@pytest.mark.root
def test_a_failing_guest_test_fails_with_its_output(guest_tests: Path) -> None:
    outcome = uml.run_in_guest(f"{guest_tests}::test_fails_on_purpose")
    assert outcome.status == "failure"
    assert "deliberate failure" in outcome.message
    assert "guest says hello" in outcome.output
