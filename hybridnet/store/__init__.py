"""One store interface for every component, with a Kubernetes and an embedded SQLite backend."""
