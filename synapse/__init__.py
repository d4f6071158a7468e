"""Synapse: the sandboxed policy runtime, its REST service and the sidecar."""
