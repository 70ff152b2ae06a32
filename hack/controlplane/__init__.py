"""A real kube-apiserver + etcd for tests, benchmarks and debugging (developer tooling).

The binaries are built from the Go modules pinned in ``go.mod`` by ``build.sh``. The package
needs ``cryptography`` and ``pyyaml`` (the test extra), so it is not part of the shipped
``hybridnet`` package. ``python -m hack.controlplane up|down`` leaves one running for people.

Modules: ``binaries`` (the build), ``pki`` (CA, certificates, kubeconfig documents),
``controlplane`` (etcd and kube-apiserver: start, readiness, stop, credentials for clients),
``forwarder`` (reach from a network namespace), ``crds`` (install, wait until served),
``state`` (recorded PIDs, cleanup after a dead owner); processes are the lab's
(:mod:`hybridnet.lab.processes`).
"""

from hack.controlplane.binaries import REPO_ROOT, build_binaries
from hack.controlplane.controlplane import ControlPlane, close_api_client, free_port, tail
from hack.controlplane.crds import DEFAULT_CRD_DIR
from hack.controlplane.errors import ControlPlaneError
from hack.controlplane.pki import CertificateAuthority, KeyPair

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
