"""The plugin <-> daemon contract: generated gRPC code (from proto/) and its client."""
