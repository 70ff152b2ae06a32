"""The allocator core: address ranges, next-fit allocation, reservations. Pure, no I/O.

Memory grows with allocated addresses, never with subnet size: a range is two integers and a
few small sets, so a /64 costs what a /24 costs.
"""
