"""Runs the daemon's attachment layer inside a node namespace, as the daemon would.

The tests run in the root namespace, which they must never change; the attachment layer works
on "its own" namespace. So a test starts this file under ``ip netns exec NODE`` with a JSON
request on stdin and reads a JSON reply: ``{"op": "attach"|"detach"|"check", ...}``.
"""

from __future__ import annotations

import json
import sys
import traceback

from hybridnet.daemon import attachment


def main() -> int:
    request = json.load(sys.stdin)
    try:
        if request["op"] == "detach":
            reply: object = attachment.detach(request["container_id"], request["ifname"])
        else:
            plan = attachment.plan_attachment(
                container_id=request["container_id"],
                netns=request["netns"],
                pod_ifname=request["ifname"],
                mac=request["mac"],
                mtu=request["mtu"],
                cidrs=request["cidrs"],
            )
            if request["op"] == "attach":
                attachment.attach(plan)
                reply = plan.host_ifname
            else:
                reply = attachment.check(plan)
    except Exception as exc:  # reported to the test, which decides
        print(
            json.dumps({"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})
        )
        return 0
    print(json.dumps({"ok": reply}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
