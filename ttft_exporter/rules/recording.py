"""Recording rules (`level:metric:operations`) for dashboards and the alerts: per
target TTFT/TTFOT quantiles, success ratio and decode rate; per Flux instance event
rate and canary propagation; plus the 30m series and 7-day medians the baseline
alerts compare against.

The latency-kind rules (quantiles, decode rate) read no cold probe (`Context.warm`):
a cold start is slow on purpose and would drag the p99 and the baselines. The
success ratio counts every probe, cold ones included: a failed cold start is a
failure."""

from __future__ import annotations

from ttft_exporter.rules.common import Context, Group, Rule, Selection, lines, record, without

__all__ = [
    "FLUX_RECORDING_GROUP",
    "PROBE_RECORDING_GROUP",
    "TTFOT",
    "TTFT",
    "flux_recording",
    "probe_recording",
]

PROBE_RECORDING_GROUP = "ttft_probe_recording"
FLUX_RECORDING_GROUP = "ttft_flux_recording"
TTFT = "ttft_probe_time_to_first_token_seconds"
TTFOT = "ttft_probe_time_to_first_output_token_seconds"
_WEEK = 7 * 86400


def _commented(rule: Rule, comment: str) -> Rule:
    # Rendered as a `#` line above the rule (see render.py), mixin style.
    rule["_comment"] = comment
    return rule


def quantile(q: float, metric: str, sel: Selection, window: str) -> str:
    """A histogram quantile that yields no sample (rather than NaN) for a window
    without observations, so medians over it and dashboards stay clean."""
    buckets = f"sum {without()} ({sel.rate(f'{metric}_bucket', window)})"
    count = f"sum {without()} ({sel.rate(f'{metric}_count', window)})"
    return lines(f"histogram_quantile({q}, {buckets})", "and", f"{count} > 0")


def _decode_rate(sel: Selection, window: str) -> str:
    tokens = sel.rate("ttft_probe_decode_tokens_total", window)
    seconds = sel.rate("ttft_probe_generation_seconds_total", window)
    return lines(f"sum {without()} ({tokens})", "/", f"(sum {without()} ({seconds}) > 0)")


def probe_recording(ctx: Context) -> Group:
    """Per-target recording rules."""
    w5, w30, week = ctx(300), ctx(1800), ctx(_WEEK)
    sel, warm = ctx.everything(), ctx.warm()
    group = Group(PROBE_RECORDING_GROUP)
    for metric, what in ((TTFT, "TTFT"), (TTFOT, "time to first output token")):
        for q in (0.5, 0.95, 0.99):
            pct = round(q * 100)
            group.rules.append(
                _commented(
                    record(f"target:{metric}:p{pct}_5m", quantile(q, metric, warm, w5)),
                    f"p{pct} {what} of successful probes over 5m (no cold probe).",
                )
            )
    requests = "ttft_probe_requests_total"
    succeeded = sel.rate(requests, w5, 'outcome="success"')
    group.rules += [
        _commented(
            record(
                "target:ttft_probe_requests:success_ratio_rate5m",
                lines(
                    f"sum {without('outcome')} ({succeeded})",
                    "/",
                    f"(sum {without('outcome')} ({sel.rate(requests, w5)}) > 0)",
                ),
            ),
            "Ratio of probes that succeeded over 5m (cold probes included).",
        ),
        _commented(
            record("target:ttft_probe_output_tokens_per_second:rate5m", _decode_rate(warm, w5)),
            "Decode rate (output tokens/s after the first token) over 5m, no cold probe.",
        ),
        _commented(
            record(f"target:{TTFT}:p95_30m", quantile(0.95, TTFT, warm, w30)),
            "p95 TTFT over 30m: TTFTRelativeRegression's current value.",
        ),
        _commented(
            record(
                f"target:{TTFT}:p95_30m_median7d",
                f"quantile_over_time(0.5, target:{TTFT}:p95_30m[{week}])",
            ),
            "7-day median of the 30m p95 TTFT: TTFTRelativeRegression's baseline.",
        ),
        _commented(
            record("target:ttft_probe_output_tokens_per_second:rate30m", _decode_rate(warm, w30)),
            "Decode rate over 30m: TokensPerSecondDrop's current value.",
        ),
        _commented(
            record(
                "target:ttft_probe_output_tokens_per_second:rate30m_median7d",
                "quantile_over_time(0.5, "
                f"target:ttft_probe_output_tokens_per_second:rate30m[{week}])",
            ),
            "7-day median of the 30m decode rate: TokensPerSecondDrop's baseline.",
        ),
    ]
    return group


def flux_recording(ctx: Context) -> Group:
    """Per-Flux-instance recording rules."""
    w5, w30, week = ctx(300), ctx(1800), ctx(_WEEK)
    sel = ctx.everything()
    events = "ttft_flux_events_processed_total"
    canary = "ttft_flux_canary_propagation_seconds"
    return Group(
        FLUX_RECORDING_GROUP,
        [
            _commented(
                record(
                    "flux:ttft_flux_events_processed:rate5m",
                    f"sum {without()} ({sel.rate(events, w5)})",
                ),
                "Events/s processed by each Flux instance over 5m.",
            ),
            _commented(
                record(
                    "flux:ttft_flux_events_processed:rate30m",
                    f"sum {without()} ({sel.rate(events, w30)})",
                ),
                "Events/s over 30m: FluxEventRateDrop's current value.",
            ),
            _commented(
                record(
                    "flux:ttft_flux_events_processed:rate30m_median7d",
                    f"quantile_over_time(0.5, flux:ttft_flux_events_processed:rate30m[{week}])",
                ),
                "7-day median of the 30m event rate: FluxEventRateDrop's baseline.",
            ),
            _commented(
                record(
                    f"flux:{canary}:p95_5m",
                    quantile(0.95, canary, sel, w5),
                ),
                "p95 canary propagation (publish to state_update on the stream) over 5m.",
            ),
        ],
    )
