"""Helm for the chart in deploy/helm/hybridnet (developer tooling).

``build.sh`` builds helm from the Go module pinned in ``go.mod`` into a cache outside the tree,
with cert-manager's CRDs next to it; ``chart`` runs ``helm template`` and renders the plain
manifests of ``deploy/`` from the chart (``python -m hack.helm.render`` writes them, ``make
manifests``).
"""

from hack.helm.chart import (
    CHART_DIR,
    PLAIN_NAMESPACE,
    RELEASE,
    HelmError,
    HelmTools,
    build_helm,
    documents,
    plain_manifests,
    template,
)

__all__ = [
    "CHART_DIR",
    "PLAIN_NAMESPACE",
    "RELEASE",
    "HelmError",
    "HelmTools",
    "build_helm",
    "documents",
    "plain_manifests",
    "template",
]
