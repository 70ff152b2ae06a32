"""The command line: global options before or after the command, one-line errors, the
kubectl plugin's name, and failures the user can act on as one line (no traceback)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybridnet.ctl.arguments import parse, prog_name
from hybridnet.ctl.errors import EXIT_ERROR, EXIT_USAGE
from hybridnet.ctl.main import run


def call(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_global_options_anywhere() -> None:
    before = parse(["--store", "a.db", "--ipam-namespace", "hn", "ip", "list"], "hybridnet-ctl")
    after = parse(["ip", "list", "--store", "a.db", "--ipam-namespace", "hn"], "hybridnet-ctl")
    for args in (before, after):
        assert (args.store_file, args.ipam_namespace, args.output) == ("a.db", "hn", "table")
    default = parse(["network", "list", "-o", "YAML"], "hybridnet-ctl")
    assert (default.ipam_namespace, default.kubeconfig, default.output) == (
        "hybridnet-system", None, "yaml"
    )  # fmt: skip
    created = parse(["network", "create", "u", "--node-selector", "a=b", "--node-selector",
                     "c=d", "--bgp-peer", "address=198.18.0.1,asn=65001"], "x")  # fmt: skip
    assert created.node_selector == [("a", "b"), ("c", "d")] and created.type == "Underlay"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["network", "list", "-o", "xml"], "'xml' is not one of table, wide, json, yaml"),
        (["subnet", "create", "s", "--cidr", "198.19.0.0/24"], "--network"),
        (["network", "create", "n", "--net-id", "ten"], "invalid int value: 'ten'"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["network", "create", "n", "--bgp-peer", "asn=1"], "lacks address="),
    ],
)
def test_command_line_errors_are_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv, "hybridnet-ctl")
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "usage:" not in err, err


def test_plugin_name() -> None:
    assert prog_name("/usr/local/bin/kubectl-hybridnet") == "kubectl hybridnet"
    assert prog_name("hybridnet-ctl") == "hybridnet-ctl"


def test_missing_files_name_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    code, out, err = call("--kubeconfig", str(tmp_path / "nope"), "network", "list")
    assert (code, out) == (EXIT_ERROR, "")
    assert err == (
        f"hybridnet-ctl: error: kubeconfig {tmp_path / 'nope'} does not exist: pass --kubeconfig "
        "FILE, set KUBECONFIG, or use --store FILE for the embedded store\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "from-env"))
    assert f"kubeconfig {tmp_path / 'from-env'} does not exist" in call("ip", "list")[2]
    code, _, err = call("--store", str(tmp_path / "none.db"), "subnet", "list")
    assert code == EXIT_ERROR and "no embedded store at" in err and err.count("\n") == 1
    assert not (tmp_path / "none.db").exists()


def test_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', "
        "insecure-skip-tls-verify: true}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "hybridnet.ctl.main", "--kubeconfig", str(kubeconfig),
         "subnet", "create", "s", "--network", "n", "--cidr", "198.19.0.0/24"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_ERROR and done.stdout == ""
    assert done.stderr == (
        f"hybridnet-ctl: error: cannot reach the cluster of {kubeconfig}: Connection refused: "
        "check that it is up and that --kubeconfig/--context (or --store) point at it\n"
    )


def test_unreachable_daemon_says_where_to_run(tmp_path: Path) -> None:
    code, out, err = call("node", "diagnose", "node1", "--socket", str(tmp_path / "{node}.sock"))
    assert (code, out) == (EXIT_ERROR, "")
    assert err.count("\n") == 1
    assert f"no daemon socket at {tmp_path / 'node1.sock'}" in err
    assert (
        "run it on node1 as root, or from inside its daemon pod: kubectl -n hybridnet-system exec"
        in err
    )
    stale = tmp_path / "stale.sock"
    stale.touch()
    code, _, err = call("--store", str(tmp_path / "x.db"), "node", "diagnose", "node1",
                        "--socket", str(stale))  # fmt: skip
    assert code == EXIT_ERROR and err.count("\n") == 1
    assert f"the daemon at {stale} did not answer" in err
