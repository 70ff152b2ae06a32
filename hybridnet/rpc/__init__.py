"""The plugin <-> daemon contract (proto/hybridnet/rpc/daemon.proto).

The daemon serves it with grpcio and the generated code (``daemon_pb2*``, ``make proto``). The
CNI plugin calls it with its own standard-library-only gRPC client (:mod:`hybridnet.rpc.client`
over :mod:`~hybridnet.rpc.http2`, :mod:`~hybridnet.rpc.hpack`, :mod:`~hybridnet.rpc.messages`
and :mod:`~hybridnet.rpc.protowire`), because it is exec'd for every CNI call."""
