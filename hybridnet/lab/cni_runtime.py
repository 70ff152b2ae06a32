"""Plays the container runtime's side of CNI, the way libcni does it.

A test or benchmark hands it a network configuration list and calls :meth:`CniRuntime.add`,
:meth:`check`, :meth:`delete`, :meth:`status` and :meth:`gc`. It does what the CNI spec asks of
a runtime: one exec per plugin with ``CNI_*`` in the environment and the plugin's configuration
on stdin (``name`` and ``cniVersion`` injected, ``prevResult`` chained on ADD and taken from the
cached result on CHECK and DEL, ``runtimeConfig`` filled from capability arguments), plugins in
order for ADD and in reverse for DEL, and the final ADD result cached per attachment.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hybridnet.lab.processes import in_namespace

Json = dict[str, Any]


class CniPluginError(Exception):
    """A plugin exited non-zero; carries the spec's error fields when it printed them."""

    def __init__(self, *, plugin: str, command: str, code: int, msg: str, details: str, raw: str):
        super().__init__(f"{plugin} {command} failed with code {code}: {msg} {details}".strip())
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details
        self.raw = raw


@dataclasses.dataclass(frozen=True)
class Attachment:
    """What identifies one attachment to the runtime: container, netns and interface."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """CNI_ARGS pairs, e.g. K8S_POD_NAME / K8S_POD_NAMESPACE."""
    capability_args: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Runtime capability arguments (portMappings, bandwidth, ...) -> runtimeConfig."""


@dataclasses.dataclass(frozen=True)
class PluginCall:
    plugin: str
    command: str
    seconds: float


class CniRuntime:
    """Executes a conflist's plugins for attachments and keeps the cache a runtime keeps."""

    def __init__(
        self,
        conflist: Json,
        plugin_dirs: Sequence[str],
        cache_dir: Path,
        exec_netns: str | None = None,
        timeout: float = 60.0,
    ):
        self.conflist = conflist
        self.plugin_dirs = list(plugin_dirs)
        self.cache_dir = cache_dir
        self.exec_netns = exec_netns
        """Namespace the plugins run in (the node's); None for the caller's own."""
        self.timeout = timeout
        self.calls: list[PluginCall] = []
        cache_dir.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------- commands

    def add(self, attachment: Attachment) -> Json:
        result: Json | None = None
        for plugin in self.conflist["plugins"]:
            result = self._exec("ADD", plugin, attachment, prev_result=result)
        if result is None:
            raise ValueError(f"conflist {self.conflist['name']!r} has no plugins")
        self._cache_path(attachment).write_text(json.dumps(result))
        return result

    def check(self, attachment: Attachment) -> None:
        cached = self.cached_result(attachment)
        for plugin in self.conflist["plugins"]:
            self._exec("CHECK", plugin, attachment, prev_result=cached)

    def delete(self, attachment: Attachment) -> None:
        cached = self.cached_result(attachment)
        for plugin in reversed(self.conflist["plugins"]):
            self._exec("DEL", plugin, attachment, prev_result=cached)
        self._cache_path(attachment).unlink(missing_ok=True)

    def status(self) -> None:
        for plugin in self.conflist["plugins"]:
            self._exec("STATUS", plugin, None, prev_result=None)

    def gc(self, valid: Sequence[Attachment]) -> None:
        attachments = [{"containerID": a.container_id, "ifname": a.ifname} for a in valid]
        for plugin in self.conflist["plugins"]:
            self._exec(
                "GC",
                plugin,
                None,
                prev_result=None,
                extra={"cni.dev/valid-attachments": attachments},
            )

    def cached_result(self, attachment: Attachment) -> Json | None:
        path = self._cache_path(attachment)
        return json.loads(path.read_text()) if path.exists() else None

    # ----------------------------------------------------------------- mechanics

    def _cache_path(self, attachment: Attachment) -> Path:
        name = self.conflist["name"]
        return self.cache_dir / f"{name}-{attachment.container_id}-{attachment.ifname}.json"

    def plugin_config(
        self,
        plugin: Json,
        attachment: Attachment | None,
        prev_result: Json | None,
        extra: Json | None = None,
    ) -> Json:
        """The stdin a plugin gets: its own section plus what the runtime injects."""
        config = copy.deepcopy(plugin)
        config["name"] = self.conflist["name"]
        config["cniVersion"] = self.conflist["cniVersion"]
        if prev_result is not None:
            config["prevResult"] = prev_result
        if attachment is not None:
            wanted = plugin.get("capabilities", {})
            runtime_config = {
                key: value for key, value in attachment.capability_args.items() if wanted.get(key)
            }
            if runtime_config:
                config["runtimeConfig"] = runtime_config
        config.update(extra or {})
        return config

    def environment(self, command: str, attachment: Attachment | None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_PATH": os.pathsep.join(self.plugin_dirs),
        }
        if attachment is not None:
            env["CNI_CONTAINERID"] = attachment.container_id
            env["CNI_NETNS"] = attachment.netns
            env["CNI_IFNAME"] = attachment.ifname
            if attachment.args:
                env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in attachment.args.items())
        return env

    def find_plugin(self, plugin_type: str) -> str:
        for directory in self.plugin_dirs:
            candidate = Path(directory) / plugin_type
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        raise FileNotFoundError(f"CNI plugin {plugin_type!r} not found in {self.plugin_dirs}")

    def _exec(
        self,
        command: str,
        plugin: Json,
        attachment: Attachment | None,
        prev_result: Json | None,
        extra: Json | None = None,
    ) -> Json:
        # DEL and GC carry no prevResult semantics beyond the cached result; CHECK/DEL use it.
        stdin = json.dumps(self.plugin_config(plugin, attachment, prev_result, extra))
        executable = self.find_plugin(plugin["type"])
        argv = in_namespace([executable], self.exec_netns)
        started = time.perf_counter()
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=self.environment(command, attachment),
            timeout=self.timeout,
            check=False,
        )
        self.calls.append(PluginCall(plugin["type"], command, time.perf_counter() - started))
        if done.returncode != 0:
            raise _plugin_error(plugin["type"], command, done.stdout, done.stderr)
        if command != "ADD":
            return prev_result or {}
        parsed: Json = json.loads(done.stdout)
        return parsed


def _plugin_error(plugin: str, command: str, stdout: str, stderr: str) -> CniPluginError:
    try:
        error = json.loads(stdout)
        return CniPluginError(
            plugin=plugin,
            command=command,
            code=int(error["code"]),
            msg=error.get("msg", ""),
            details=error.get("details", ""),
            raw=stdout,
        )
    except (ValueError, KeyError, TypeError):
        return CniPluginError(
            plugin=plugin,
            command=command,
            code=-1,
            msg="no CNI error on stdout",
            details=stderr,
            raw=stdout,
        )
