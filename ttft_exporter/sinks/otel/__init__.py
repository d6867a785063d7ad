"""The OpenTelemetry sink: OTLP metrics under the GenAI semantic conventions and a span
per probe and per Flux canary, from the same results and events as the Prometheus sink.

Only `config` (the `otel:` section) and `switch` (the reloadable stand-in) are imported
when the section is absent; the SDK is imported by `providers`, `metrics` and `traces`,
and only once `otel:` is set (tests/unit/sinks/otel/test_otel_switch.py checks it).
"""
