"""The policy service core (no HTTP here): config, artifact store and registry, auth, limits, metrics,
decision log, sidecar. `synapse.api` translates HTTP to and from it."""
