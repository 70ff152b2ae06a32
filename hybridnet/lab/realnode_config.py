"""What a real node's containerd and kubelet are configured with, and why each setting.

Pure functions, so the settings the issue measured on this machine kind are written down (and
unit tested) in one place: :mod:`hybridnet.lab.realnode` writes them into the node's directory.
Paths are those *inside* the node's mount namespace, where ``/var/lib``, ``/var/log``,
``/opt``, ``/etc/cni`` and ``/run`` are the node's own (see :mod:`hybridnet.lab.realnode`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONTAINERD_STATE = "/run/containerd"
CONTAINERD_SOCKET = f"{CONTAINERD_STATE}/containerd.sock"
CNI_BIN_DIR = "/opt/cni/bin"
CNI_CONF_DIR = "/etc/cni/net.d"
CONTAINERD_DISABLED_PLUGINS = (
    # NRI lets other programs hook into containers; nothing here uses it.
    "io.containerd.nri.v1.nri",
    # Snapshotters (and their diff/mount helpers) that do not apply: overlayfs is the one used.
    "io.containerd.snapshotter.v1.blockfile",
    "io.containerd.snapshotter.v1.erofs",
    "io.containerd.snapshotter.v1.native",
    "io.containerd.differ.v1.erofs",
    "io.containerd.mount-handler.v1.erofs",
)
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
"""What kubelet's container manager sets at start where the value differs (its
``setupKernelTunables``: key under /proc/sys -> the value it writes). In the node's mount
namespace each is covered by a file holding the host's current value, so kubelet writes into
that file and the host's kernel is not changed."""


@dataclasses.dataclass(frozen=True)
class ContainerdSettings:
    """A node's containerd: its root (host-visible), runc, and the sandbox image's name."""

    root: Path
    runc: Path
    sandbox_image: str


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _toml_strings(values: Sequence[str]) -> str:
    return "[" + ", ".join(_toml_string(v) for v in values) + "]"


def containerd_config(settings: ContainerdSettings) -> str:
    """containerd's config (version 3) for one node.

    * ``restrict_oom_score_adj``: this machine has no CAP_SYS_RESOURCE; without it runc cannot
      lower a sandbox's oom_score_adj and every sandbox fails with "can't get final child's PID
      from pipe: EOF".
    * ``netns_mounts_under_state_dir``: pod network namespaces are pinned under the node's own
      state directory (a tmpfs of the node's mount namespace) rather than the host's
      ``/run/netns``, so they go with the node and the lab's namespace list never sees them.
    * runc with ``SystemdCgroup = false``: kubelet uses the cgroupfs driver (no systemd here).
    """
    cri_runtime = '[plugins."io.containerd.cri.v1.runtime"]'
    runc_table = '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]'
    lines = [
        "version = 3",
        f"root = {_toml_string(str(settings.root))}",
        f"state = {_toml_string(CONTAINERD_STATE)}",
        f"disabled_plugins = {_toml_strings(CONTAINERD_DISABLED_PLUGINS)}",
        "",
        "[grpc]",
        f"  address = {_toml_string(CONTAINERD_SOCKET)}",
        "",
        cri_runtime,
        "  enable_selinux = false",
        "  disable_apparmor = true",
        "  restrict_oom_score_adj = true",
        "  netns_mounts_under_state_dir = true",
        "",
        cri_runtime[:-1] + ".containerd]",
        '  default_runtime_name = "runc"',
        "",
        runc_table,
        '  runtime_type = "io.containerd.runc.v2"',
        "",
        runc_table[:-1] + ".options]",
        f"  BinaryName = {_toml_string(str(settings.runc))}",
        "  SystemdCgroup = false",
        "",
        cri_runtime[:-1] + ".cni]",
        f"  bin_dirs = {_toml_strings([CNI_BIN_DIR])}",
        f"  conf_dir = {_toml_string(CNI_CONF_DIR)}",
        "  max_conf_num = 1",
        "",
        '[plugins."io.containerd.cri.v1.images"]',
        '  snapshotter = "overlayfs"',
        "",
        '[plugins."io.containerd.cri.v1.images".pinned_images]',
        f"  sandbox = {_toml_string(settings.sandbox_image)}",
        "",
    ]
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class KubeletSettings:
    """A node's kubelet: its cgroup root, the CA it trusts, and the node's addresses."""

    cgroup_root: str
    client_ca_file: Path
    max_pods: int = 110


def kubelet_config(settings: KubeletSettings) -> dict[str, Any]:
    """kubelet's KubeletConfiguration (JSON is YAML, which kubelet reads).

    * ``cgroupDriver: cgroupfs`` under a ``cgroupRoot`` of the node's own, so nodes on one
      machine do not share ``kubepods``; ``failCgroupV1: false`` (the host has hybrid cgroups,
      which kubelet refuses by default since 1.31) and ``failSwapOn: false``.
    * Image garbage collection off (high threshold 100 %): images come from ``ctr images
      import`` and could not be pulled back.
    * Eviction thresholds at their floor: a shared build machine's disk and memory are not the
      node's to protect.
    """
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": settings.cgroup_root,
        "cgroupsPerQOS": True,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(settings.client_ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "readOnlyPort": 0,
        "clusterDomain": "cluster.local",
        "maxPods": settings.max_pods,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "enableServer": True,
        "logging": {"format": "text"},
    }
