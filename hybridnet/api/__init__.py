"""Resource models (Network, Subnet, IPInstance, NodeInfo), constants and validation; no I/O."""
