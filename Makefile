# The two commands of the README, and the pieces they are made of. Every target is safe to
# run twice: Debian packages are installed only when missing, the virtual environment is
# rebuilt only when pyproject.toml changes, the control plane is built once into a cache.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# What the tiers need from Debian: the kernel's tools, user-mode-linux for 802.1Q (its
# configuration, and linux-source-6.1 + make/flex/bison/bc/xz-utils/libelf-dev to build our kernel
# from it: make uml-kernel), BIRD as the BGP peer, the reference CNI plugins, podman + runc +
# busybox-static as a second CNI runtime (libcni), ping/tcpdump for traffic checks, iperf3 for
# the datapath benchmark, and mmdebstrap for the container image's Debian root file system
# (make image).
DEBIAN_PACKAGES := iproute2 iptables nftables kmod user-mode-linux bird2 \
	containernetworking-plugins podman runc busybox-static iputils-ping procps tcpdump \
	iperf3 zsh python3-venv ca-certificates gcc libc6-dev mmdebstrap \
	linux-source-6.1 make flex bison bc xz-utils libelf-dev

.PHONY: test demo deps venv controlplane helm manifests image realcluster-build uml-kernel \
	bench-realcluster \
	lint typecheck unit netns bench clean-testbed controlplane-up proto controlplane-down

## make test: install everything, then lint, type check and run every test tier. The builds come
## first, each cached outside the clone and done once: the control plane, helm, the image (a
## cold build takes 1-2.5 minutes; a code change remakes only its application layer), the
## real-cluster binaries (kubelet, scheduler, controller manager, containerd) and the
## user-mode-linux kernel the 802.1Q tests boot.
test: deps venv controlplane helm image realcluster-build uml-kernel lint typecheck
	$(BIN)/pytest
	$(BIN)/python -m hybridnet.lab leftovers

## make demo: a virtual 3-node hybridnet cluster in network namespaces on the embedded store:
## underlay and overlay pods on every node through the real plugin, tables, pings, teardown.
demo: deps venv
	$(BIN)/python -m hack.demo

deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make: run as root (network namespaces, apt-get)" >&2; exit 1; fi
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -q; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "make: Python >= 3.11 is required (set PYTHON=...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $(STAMP)

## make controlplane: build kube-apiserver + etcd from Go modules into ~/.cache, once.
controlplane:
	@command -v go >/dev/null || { echo "make: Go is required to build the control plane" >&2; exit 1; }
	hack/controlplane/build.sh

## make helm: build helm from Go modules (and fetch cert-manager's CRDs) into ~/.cache, once.
helm:
	@command -v go >/dev/null || { echo "make: Go is required to build helm" >&2; exit 1; }
	hack/helm/build.sh

## make manifests: render deploy/'s plain manifests from the chart deploy/helm/hybridnet (a test
## checks that the committed files are what this produces).
manifests: venv helm
	$(BIN)/python -m hack.helm.render

## make image: the container image hybridnet:<version> as an OCI archive, built without a
## registry (mmdebstrap + pip, hack/image/) into ~/.cache/hybridnet/image; prints its path.
## Instant when pyproject.toml, the package and deploy/Containerfile are unchanged.
image: deps venv
	$(BIN)/python -m hack.image

## make realcluster-build: build kubelet, kube-scheduler, kube-controller-manager (the control
## plane's kubernetes module), containerd + its runc shim + ctr, and the pause binary into
## ~/.cache, once (the real-cluster tier, tests/realcluster/; runc is Debian's).
realcluster-build: controlplane
	@command -v gcc >/dev/null || { echo "make: gcc is required (the pause binary; make deps)" >&2; exit 1; }
	hack/realcluster/build.sh

## make uml-kernel: build the user-mode-linux kernel (Debian's linux-source-6.1 with Debian's
## user-mode-linux config plus hack/uml/kernel.config built in: 802.1Q, nftables' inet family,
## SCTP, ...) into ~/.cache, once; tests/netns/uml.py boots it for the 802.1Q tests.
uml-kernel: deps
	hack/uml/build.sh

## make controlplane-up: a kube-apiserver + etcd left running for debugging (prints KUBECONFIG);
## make controlplane-down stops it. CONTROLPLANE_DIR holds its kubeconfig, logs and PIDs.
CONTROLPLANE_DIR ?= /tmp/hybridnet-controlplane

controlplane-up: venv controlplane
	$(BIN)/python -m hack.controlplane up --dir $(CONTROLPLANE_DIR)

controlplane-down: venv controlplane
	$(BIN)/python -m hack.controlplane down --dir $(CONTROLPLANE_DIR)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest tests/unit

netns: deps venv uml-kernel
	$(BIN)/pytest tests/netns

## make bench: the quick benchmarks (4-5 minutes on the 2-core reference machine).
bench: deps venv
	$(BIN)/python -m bench.cni_baseline --runs 50 --json bench/results/cni_baseline.json
	$(BIN)/python -m bench.datapath_traffic --runs 3 --json bench/results/datapath_traffic.json
	$(BIN)/python -m bench.node_join --joins 10 --json bench/results/node_join.json
	$(BIN)/python -m bench.policy_connrate --runs 5 --json bench/results/policy_connrate.json

## make bench-realcluster: 100 pods of a Deployment from create to all Running on 3 real nodes
## (kubelet + containerd), per CNI setup (about 2 minutes per setup on the reference machine).
bench-realcluster: deps venv helm image realcluster-build
	$(BIN)/python -m bench.realcluster_pods --pods 100 --runs 3 --json bench/results/realcluster_pods.json

## make proto: regenerate hybridnet/rpc/daemon_pb2*.py* from proto/ (a unit test checks that
## the committed files are what this produces).
proto: venv
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/hybridnet/rpc/daemon.proto

## remove namespaces left by test runs that are no longer alive
clean-testbed: venv
	$(BIN)/python -m hybridnet.lab clean
