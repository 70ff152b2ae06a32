"""The control plane's error types."""


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or used; the message says why."""


class WorkDirInUse(ControlPlaneError):
    """Another control plane holds the work directory's lock: leave its files alone."""
