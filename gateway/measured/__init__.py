"""What the gateway measures for routing: spend against caps, latency per deployment, requests
in flight; kept in memory for the request path and shared through Redis in the background.

See :mod:`gateway.measured.live` for the whole picture."""
