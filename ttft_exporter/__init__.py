"""ttft_exporter: streaming TTFT probes and Flux monitoring for Prometheus."""

__version__ = "0.1.0"

__all__ = ["__version__"]
