"""ExaBGP supervision and the announce/withdraw bookkeeping for underlay routes."""
