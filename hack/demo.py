"""``make demo``: hybridnet on its embedded default, on this machine, in namespaces it makes.

A node namespace runs ``hybridnet-daemon`` on the embedded SQLite store (no Kubernetes); two pod
namespaces are attached by the real ``hybridnet-cni``, executed the way a container runtime
executes it; the pods ping each other and the node over IPv4 and IPv6; everything is removed.
Nothing in the root namespace changes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from hybridnet import lab
from hybridnet.lab import daemon as lab_daemon
from hybridnet.lab.cni_runtime import Attachment, CniRuntime


def main() -> int:
    failures = 0
    with lab.testbed_run() as bed, tempfile.TemporaryDirectory(prefix="hybridnet-demo-") as tmp:
        work = Path(tmp)
        fabric = lab.Fabric(bed)
        try:
            node = fabric.add_node()
            node.sysctl("net.ipv4.ip_forward", "1")
            node.sysctl("net.ipv6.conf.all.forwarding", "1")
            _, socket = lab_daemon.start_embedded_daemon(
                node, work, "198.19.60.0/24", "2001:db8:60::/64",
                "--ip-family", "DualStack", "--log-level", "warning",
            )  # fmt: skip
            print(f"hybridnet-daemon serving on {socket} in {node.name} (embedded store)")
            plugins = lab_daemon.plugin_dir(work / "bin")
            conflist = {
                "cniVersion": "1.1.0",
                "name": "hybridnet",
                "plugins": [{"type": "hybridnet", "socket": str(socket)}],
            }
            runtime = CniRuntime(conflist, [str(plugins)], work / "cache")
            pods = [fabric.add_pod("web"), fabric.add_pod("db")]
            addresses = {}
            for pod in pods:
                result = runtime.add(
                    Attachment(
                        container_id=pod.name,
                        netns=pod.path,
                        ifname="eth0",
                        args={"K8S_POD_NAMESPACE": "demo", "K8S_POD_NAME": pod.name},
                    )
                )
                addresses[pod.name] = [ip["address"] for ip in result["ips"]]
                print(f"CNI ADD {pod.name}: {', '.join(addresses[pod.name])}")
            web, db = pods
            targets = [a.split("/")[0] for a in addresses[db.name]] + [node.ipv4, node.ipv6]
            for target in targets:
                ok = lab.ping(web, target)
                failures += not ok
                print(f"ping {web.name} -> {target}: {'ok' if ok else 'FAILED'}")
            for pod in pods:
                runtime.delete(
                    Attachment(
                        container_id=pod.name,
                        netns=pod.path,
                        ifname="eth0",
                        args={"K8S_POD_NAMESPACE": "demo", "K8S_POD_NAME": pod.name},
                    )
                )
                print(f"CNI DEL {pod.name}: done")
        finally:
            fabric.teardown()
    print("torn down; leftovers:", ", ".join(lab.leftovers()) or "none")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
