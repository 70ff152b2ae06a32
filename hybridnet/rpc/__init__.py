"""The plugin <-> daemon contract: generated gRPC code (from proto/, ``make proto``) and the
client the CNI plugin (and later hybridnet-ctl) uses, :mod:`hybridnet.rpc.client`."""
