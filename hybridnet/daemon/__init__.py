"""The per-node daemon: builds pod attachments and reconciles the node's datapath."""
