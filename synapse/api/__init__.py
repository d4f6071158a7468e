"""The HTTP layer: translates requests to synapse.service calls (the runtime never imports this)."""
