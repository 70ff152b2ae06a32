"""The CNI plugin the container runtime executes: parse, one call to the node daemon, reply."""
