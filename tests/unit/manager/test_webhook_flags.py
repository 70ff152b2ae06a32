"""The manager's webhook flags: the combinations that work, and a clear refusal of the rest."""

from __future__ import annotations

import pytest

from hybridnet.manager import main

KUBE = ["--kubeconfig", "k"]
ADDRESS = ["--webhook-address", "0.0.0.0:9898"]
SELF_MANAGED = [*ADDRESS, "--webhook-secret", "certs", "--webhook-service", "hw"]
FILES = [*ADDRESS, "--webhook-cert", "c", "--webhook-key", "k", "--webhook-ca", "a"]


@pytest.mark.parametrize(
    "flags",
    [
        SELF_MANAGED,
        [*FILES, "--webhook-service", "hw"],
        [*FILES, "--webhook-url", "https://127.0.0.1:9898"],
        [*ADDRESS, "--webhook-cert", "c", "--webhook-key", "k"],
        [],
    ],
)
def test_working_combinations(flags: list[str]) -> None:
    args = main.parse_args([*KUBE, *flags])
    assert args.webhook_resync_seconds == 30.0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([*SELF_MANAGED, "--webhook-cert", "c"], "--webhook-secret makes its own certificates"),
        (["--webhook-secret", "s", "--webhook-service", "hw"], "needs --webhook-address"),
        ([*ADDRESS, "--webhook-secret", "s"], "--webhook-secret needs --webhook-service"),
        (ADDRESS, "--webhook-address needs --webhook-secret, or --webhook-cert"),
        ([*FILES, "--webhook-service", "hw", "--webhook-url", "https://h"], "give one"),
        (
            [*ADDRESS, "--webhook-cert", "c", "--webhook-key", "k", "--webhook-service", "hw"],
            "--webhook-service needs --webhook-ca",
        ),
        ([*SELF_MANAGED, "--webhook-resync-seconds", "0"], "must be positive"),
    ],
)
def test_refused_combinations(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main.parse_args([*KUBE, *flags])
    assert message in capsys.readouterr().err


def test_the_embedded_store_has_no_secrets_or_services(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.parse_args(["--store", "x.db", *SELF_MANAGED])
    assert "need Kubernetes" in capsys.readouterr().err
