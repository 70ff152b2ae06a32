"""Tests of the CNI plugin front end (hybridnet.cni) and the daemon client (hybridnet.rpc)."""
