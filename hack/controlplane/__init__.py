"""A real kube-apiserver + etcd for tests, benchmarks and debugging (developer tooling).

The binaries are built from the Go modules pinned in ``go.mod`` by ``build.sh``. The package
needs ``cryptography`` and ``pyyaml`` (the test extra), so it is not part of the shipped
``hybridnet`` package.
"""

from hack.controlplane.controlplane import (
    DEFAULT_CRD_DIR,
    REPO_ROOT,
    CertificateAuthority,
    ControlPlane,
    ControlPlaneError,
    KeyPair,
    build_binaries,
    close_api_client,
    free_port,
    tail,
)

__all__ = [
    "DEFAULT_CRD_DIR",
    "REPO_ROOT",
    "CertificateAuthority",
    "ControlPlane",
    "ControlPlaneError",
    "KeyPair",
    "build_binaries",
    "close_api_client",
    "free_port",
    "tail",
]
