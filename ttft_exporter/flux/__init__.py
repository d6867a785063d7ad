"""Flux event-stream monitoring: WebSocket subscriber, canary and read check; they emit
Flux events (events.py) and write no metric."""
