"""IPAM over the store: allocations persisted as IPInstances. Shared by the manager (which
allocates for Kubernetes pods) and the daemon (which allocates itself on the embedded store)."""
