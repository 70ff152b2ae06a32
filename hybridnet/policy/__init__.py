"""Kubernetes NetworkPolicy: the parsed model, the pure compiler (policies, pods, namespaces ->
per-local-pod rule sets), its evaluator and the nftables renderer. No I/O here: the daemon
applies what the renderer writes, ``hybridnet-ctl policy`` explains what the compiler found."""
