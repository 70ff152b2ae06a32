"""The central manager: IPAM over Network/Subnet resources, leader-elected."""
