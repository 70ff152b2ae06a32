"""Bad input to the plugin executable: each gets the right CNI code, error JSON, no traceback."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridnet.cni import commands, main, versions
from tests.unit.cni.conftest import plugin_executable

GOOD = {"cniVersion": "1.1.0", "name": "hybridnet", "type": "hybridnet",
        "socket": "/nonexistent/daemon.sock"}  # fmt: skip


def add_env(netns: str = "/proc/self/ns/net", **overrides: str) -> dict[str, str]:
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "pod1", "CNI_NETNS": netns,
           "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}  # fmt: skip
    env.update(overrides)
    return {k: v for k, v in env.items() if v != "<unset>"}


def execute(env: dict[str, str], stdin: bytes) -> tuple[int, dict[str, Any], str]:
    """Run the installed plugin; return its exit code, its stdout as JSON, and its stderr."""
    done = subprocess.run(
        [str(plugin_executable())], input=stdin, env=env, capture_output=True, check=False
    )
    stderr = done.stderr.decode(errors="replace")
    assert "Traceback" not in stderr
    return done.returncode, json.loads(done.stdout), stderr


def assert_error(document: dict[str, Any], code: int) -> None:
    assert set(document) <= {"cniVersion", "code", "msg", "details"}
    assert document["code"] == code, document
    assert document["cniVersion"] in versions.SUPPORTED
    assert isinstance(document["msg"], str) and document["msg"]


@pytest.mark.parametrize(
    ("stdin", "code"),
    [
        (b"", 6),
        (b"{", 6),
        (json.dumps(GOOD).encode()[:-7], 6),  # truncated
        (b"\xff\xfe\x00garbage", 6),
        (b"[" * 100_000, 6),  # nesting too deep for the decoder
        (b"[]", 7),
        (b'"a string"', 7),
        (json.dumps({**GOOD, "cniVersion": "0.2.0"}).encode(), 1),
        (json.dumps({**GOOD, "cniVersion": "2.0.0"}).encode(), 1),
        (json.dumps({k: v for k, v in GOOD.items() if k != "cniVersion"}).encode(), 7),
        (json.dumps({**GOOD, "cniVersion": 1.1}).encode(), 7),
        (json.dumps({k: v for k, v in GOOD.items() if k != "name"}).encode(), 7),
        (json.dumps({**GOOD, "name": "-leading-dash"}).encode(), 7),
        (json.dumps({**GOOD, "name": 5}).encode(), 7),
        (json.dumps({k: v for k, v in GOOD.items() if k != "type"}).encode(), 7),
        (json.dumps({**GOOD, "socket": "relative.sock"}).encode(), 7),
        (json.dumps({**GOOD, "mtu": "1500"}).encode(), 7),
        (json.dumps({**GOOD, "mtu": 20}).encode(), 7),
        (json.dumps({**GOOD, "timeout": -1}).encode(), 7),
        (json.dumps({**GOOD, "prevResult": []}).encode(), 7),
        (json.dumps({**GOOD, "prevResult": {"ips": [{"address": "nope"}]}}).encode(), 7),
    ],
)
def test_bad_stdin(stdin: bytes, code: int) -> None:
    exit_code, document, stderr = execute(add_env(), stdin)
    assert exit_code == 1
    assert_error(document, code)
    assert f"[{code}]" in stderr


def test_unknown_version_lists_the_supported_ones() -> None:
    _, document, _ = execute(add_env(), json.dumps({**GOOD, "cniVersion": "0.2.0"}).encode())
    assert document["details"] == "supported versions: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"


@pytest.mark.parametrize(
    "env",
    [
        add_env(CNI_COMMAND="<unset>"),
        add_env(CNI_COMMAND="INIT"),
        add_env(CNI_COMMAND="add"),
        add_env(CNI_CONTAINERID="<unset>"),
        add_env(CNI_CONTAINERID="-starts-with-dash"),
        add_env(CNI_CONTAINERID="has space"),
        add_env(CNI_NETNS="<unset>"),
        add_env(netns="/nonexistent/netns/pod1"),
        add_env(CNI_IFNAME="<unset>"),
        add_env(CNI_IFNAME="a-very-long-ifname"),  # 18 > 15
        add_env(CNI_IFNAME="eth/0"),
        add_env(CNI_IFNAME="eth:0"),
        add_env(CNI_IFNAME="eth 0"),
        add_env(CNI_IFNAME="."),
        add_env(CNI_IFNAME=".."),
        add_env(CNI_ARGS="K8S_POD_NAME"),
        add_env(CNI_ARGS="SOMETHING=else"),
        {**add_env(CNI_COMMAND="CHECK"), "CNI_NETNS": ""},
        {**add_env(CNI_COMMAND="DEL"), "CNI_IFNAME": ""},
    ],
)
def test_bad_environment(env: dict[str, str]) -> None:
    exit_code, document, _ = execute(env, json.dumps(GOOD).encode())
    assert exit_code == 1
    assert_error(document, 4)


def test_error_json_speaks_the_requested_version() -> None:
    config = {**GOOD, "cniVersion": "0.4.0"}
    _, document, _ = execute(add_env(CNI_IFNAME="eth/0"), json.dumps(config).encode())
    assert document["cniVersion"] == "0.4.0"


def test_check_without_prev_result_is_invalid_config() -> None:
    _, document, _ = execute(add_env(CNI_COMMAND="CHECK"), json.dumps(GOOD).encode())
    assert_error(document, 7)


def test_unexpected_exception_is_code_999_without_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("the unexpected")

    monkeypatch.setattr(commands, "dispatch", explode)
    out, err = io.StringIO(), io.StringIO()
    assert main.run(add_env(), json.dumps(GOOD).encode(), out, err) == 1
    document = json.loads(out.getvalue())
    assert_error(document, 999)
    assert document["msg"] == "RuntimeError: the unexpected"
    assert "test_bad_input.py" in document["details"]
    assert "Traceback" not in err.getvalue() and "the unexpected" in err.getvalue()


def _run_in_process(env: dict[str, str], stdin: bytes) -> tuple[int, dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    exit_code = main.run(env, stdin, out, err)
    assert "Traceback" not in err.getvalue()
    return exit_code, json.loads(out.getvalue())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_stdin_in_process(stdin: bytes) -> None:
    exit_code, document = _run_in_process(add_env(), stdin)
    assert exit_code == 1
    assert document["code"] in {1, 6, 7}
    assert set(document) <= {"cniVersion", "code", "msg", "details"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "cniVersion": st.sampled_from([*versions.SUPPORTED, "0.1.0", "x"]) | json_values,
            "name": st.just("hybridnet") | json_values,
            "type": st.just("hybridnet") | json_values,
            "mtu": json_values,
            "socket": json_values,
            "prevResult": json_values,
            "cni.dev/valid-attachments": json_values,
        },
    )
)
def test_arbitrary_json_config_in_process(config: dict[str, Any]) -> None:
    """Structured garbage: any outcome but a crash; the daemon is never reachable here."""
    config.setdefault("socket", "/nonexistent/daemon.sock")
    exit_code, document = _run_in_process(add_env(), json.dumps(config).encode())
    assert exit_code == 1
    assert document["code"] in {1, 6, 7, 11}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200))
def test_arbitrary_stdin_through_the_executable(stdin: bytes) -> None:
    exit_code, document, _ = execute(add_env(), stdin)
    assert exit_code == 1
    assert document["code"] in {1, 6, 7}


def test_stdin_that_is_not_readable(tmp_path: Path) -> None:
    """A closed stdin reads as empty: a decode error, not a crash."""
    done = subprocess.run(
        [str(plugin_executable())],
        stdin=subprocess.DEVNULL,
        env=add_env(),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 1
    assert_error(json.loads(done.stdout), 6)
