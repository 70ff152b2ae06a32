// Pins the container runtime of the real-cluster tier: containerd v2 with its runc shim and
// ctr, built from Go modules by hack/realcluster/build.sh. No Go code of ours lives here; the
// module only fixes versions.
module hybridnet.local/containerd

go 1.25.0

require github.com/containerd/containerd/v2 v2.2.9
