"""Flux event-stream monitoring: WebSocket subscriber, canary and their metrics."""
