"""The only importer of pyroute2: one small module per kernel object.

Callers run in the node's network namespace (the daemon's own); the pod's namespace is reached
by path. ``ensure_*`` functions are idempotent, ``delete_*`` ones tolerate absence.
"""
