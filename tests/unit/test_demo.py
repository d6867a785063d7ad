"""`ttft-exporter demo` end to end in a subprocess: non-zero TTFT histograms within 10 s,
Flux metrics from the simulated Flux, a clean exit on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import free_port


def samples(text: str, name: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[sample.labels.get("target") or sample.labels.get("flux", "")] = float(
                    sample.value
                )
    return out


def test_demo_shows_ttft_histograms_within_10s() -> None:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ttft_exporter", "demo", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ttft: dict[str, float] = {}
        flux_up: dict[str, float] = {}
        while time.monotonic() - started < 10.0:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                time.sleep(0.2)
                continue
            ttft = samples(text, "ttft_probe_time_to_first_token_seconds_count")
            flux_up = samples(text, "ttft_flux_up")
            if (
                ttft.get("sim-healthy", 0) > 0
                and ttft.get("sim-reasoning", 0) > 0
                and ttft.get("sim-ollama", 0) > 0
                and ttft.get("sim-tgi", 0) > 0
                and flux_up.get("demo") == 1.0
            ):
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        assert ttft.get("sim-healthy", 0) > 0, ttft
        assert ttft.get("sim-reasoning", 0) > 0, ttft
        assert ttft.get("sim-ollama", 0) > 0, ttft  # the NDJSON protocol end to end
        assert ttft.get("sim-tgi", 0) > 0, ttft
        assert flux_up.get("demo") == 1.0, flux_up
        assert elapsed < 10.0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/metrics" in out
