"""Names shared with alibaba/hybridnet: the API group, labels and annotations users set."""

from typing import Final

GROUP: Final = "networking.alibaba.com"
VERSION: Final = "v1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

INSTALL_NAMESPACE: Final = "hybridnet-system"
"""Where the chart and deploy/ install hybridnet: the manager's Lease and every IPInstance (the
default of the manager's --namespace, the daemon's and hybridnet-ctl's --ipam-namespace)."""

# Network types and modes (spec.type / spec.mode of a Network).
TYPE_UNDERLAY: Final = "Underlay"
TYPE_OVERLAY: Final = "Overlay"
TYPE_GLOBAL_BGP: Final = "GlobalBGP"
MODE_VLAN: Final = "VLAN"
MODE_BGP: Final = "BGP"
MODE_VXLAN: Final = "VXLAN"
MODE_GLOBAL_BGP: Final = "GlobalBGP"
MODES_BY_TYPE: Final = {
    TYPE_UNDERLAY: (MODE_VLAN, MODE_BGP),
    TYPE_OVERLAY: (MODE_VXLAN,),
    TYPE_GLOBAL_BGP: (MODE_GLOBAL_BGP,),
}
DEFAULT_MODE_BY_TYPE: Final = {
    TYPE_UNDERLAY: MODE_VLAN,
    TYPE_OVERLAY: MODE_VXLAN,
    TYPE_GLOBAL_BGP: MODE_GLOBAL_BGP,
}

IPV4: Final = "4"
IPV6: Final = "6"

# Labels hybridnet puts on IPInstances (so components can select by them).
LABEL_NETWORK: Final = f"{GROUP}/network"
LABEL_SUBNET: Final = f"{GROUP}/subnet"
LABEL_NODE: Final = f"{GROUP}/node"
LABEL_POD: Final = f"{GROUP}/pod"
LABEL_POD_UID: Final = f"{GROUP}/pod-uid"

# Node labels the manager keeps current.
LABEL_UNDERLAY_ATTACHMENT: Final = f"{GROUP}/underlay-network-attachment"
LABEL_OVERLAY_ATTACHMENT: Final = f"{GROUP}/overlay-network-attachment"
LABEL_IPV4_QUOTA: Final = f"{GROUP}/ipv4-address-quota"
LABEL_IPV6_QUOTA: Final = f"{GROUP}/ipv6-address-quota"
LABEL_DUALSTACK_QUOTA: Final = f"{GROUP}/dualstack-address-quota"
QUOTA_NONEMPTY: Final = "nonempty"
QUOTA_EMPTY: Final = "empty"

# Annotations users set on pods (or, as a fallback, namespaces).
ANNOTATION_NETWORK_TYPE: Final = f"{GROUP}/network-type"
ANNOTATION_SPECIFIED_NETWORK: Final = f"{GROUP}/specified-network"
ANNOTATION_SPECIFIED_SUBNET: Final = f"{GROUP}/specified-subnet"
ANNOTATION_IP_FAMILY: Final = f"{GROUP}/ip-family"
ANNOTATION_IP_RETAIN: Final = f"{GROUP}/ip-retain"
ANNOTATION_IP_POOL: Final = f"{GROUP}/ip-pool"
ANNOTATION_MAC_POOL: Final = f"{GROUP}/mac-pool"
