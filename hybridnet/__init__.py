"""hybridnet: underlay (VLAN/BGP) and overlay (VXLAN) pod networking with one IPAM."""

__version__ = "0.1.0"
