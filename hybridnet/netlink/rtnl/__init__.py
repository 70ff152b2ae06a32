"""rtnetlink spoken directly over a socket, for the node datapath's bulk reads and writes.

pyroute2 costs about 250 µs per request and 50 µs per decoded message on these machines; a
node with thousands of remote nodes and subnets needs tens of thousands of both per
reconcile. These modules encode the few message kinds the datapath uses with ``struct``,
pipeline requests on one socket (many per ``send``, acknowledgements matched by sequence
number) and decode only the attributes they need. One module per kernel object; each
function states the namespace it acts in: the calling thread's.
"""
