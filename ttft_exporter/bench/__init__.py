"""`ttft-exporter bench`: a load tester on the exporter's own probe engine.

One job per module: `profile` (steps, arrivals), `prompts` (synthetic or JSONL),
`runner` (drives the engine through `probes.measure`), `selfwatch` (is the client the
bottleneck?), `stats` and `goodput` (summaries), `results` (versioned JSON, CSV),
`progress` (live display, final table), `plots` (matplotlib, optional), `compare`,
`merge` and `cli`. Nothing here imports the probe engine: only the probes package's
public API.
"""
