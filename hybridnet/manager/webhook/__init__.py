"""Admission webhook: validates Networks and Subnets against the cluster, mutates Pods."""
