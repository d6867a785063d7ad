"""The Prometheus sink: the per-target series store with its hand-written renderer,
the Flux families as prometheus_client objects, and a Collector adapter for tests."""
