// Pins the Helm the chart tests run (deploy/helm/hybridnet): helm.sh/helm/v3's cmd/helm, built
// from Go modules by hack/helm/build.sh. v3.19 is the line built on the same Kubernetes
// libraries (v0.34) as the control plane's kube-apiserver (hack/controlplane/go.mod) and needs
// no newer Go than it. No Go code of ours lives here; the module only fixes versions.
module hybridnet.local/helm

go 1.24.0

require helm.sh/helm/v3 v3.19.5 // the one module; build.sh reads its version from here
