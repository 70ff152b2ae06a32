"""hybridnet-ctl: the operator's command line (networks, subnets, addresses, the IPAM audit,
node diagnosis, moving over from the reference), also installed as ``kubectl-hybridnet``."""
