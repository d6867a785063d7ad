"""Which panel shows the problem an alert is about. Every alert's runbook_url points at
its section of docs/runbooks.md, and each section opens with a **Dashboard.** line
naming that panel and the Grafana path that opens it (written by `make dashboards`);
`dashboards/runbook-panels.yaml` holds the same map for tooling. Tests check every
alert of `alerts/` has an entry and every entry names a panel that exists."""

from __future__ import annotations

import re
from typing import Any

from dashboards.generate import exporter, fleet, flux, slos

# alert name -> (dashboard uid, panel title)
ALERT_PANELS: dict[str, tuple[str, str]] = {
    "TTFTLatencyRegression": (fleet.UID, "TTFT p50 / p95 / p99"),
    "TTFTRelativeRegression": (fleet.UID, "TTFT p50 / p95 / p99"),
    "TokensPerSecondDrop": (fleet.UID, "Output tokens/s (decode rate)"),
    "LLMProbeFailing": (fleet.UID, "Failures by reason"),
    "LLMUsageImplausible": (fleet.UID, "Tokens spent by probes"),
    "LLMStreamsBuffered": (fleet.UID, "Suspect and buffered probes"),
    "TTFTExporterStarved": (fleet.UID, "Suspect and buffered probes"),
    "LLMProbeAbsent": (fleet.UID, "Targets"),
    "LLMProbeBudgetExhausted": (fleet.UID, "Budget exhausted"),
    "TTFTErrorBudgetBurn": (slos.UID, "Burn rate per window"),
    "TPOTErrorBudgetBurn": (slos.UID, "Burn rate per window"),
    "LLMAvailabilityErrorBudgetBurn": (slos.UID, "Burn rate per window"),
    "TTFTExporterDown": (exporter.UID, "Series per scrape"),
    "TTFTExporterOTLPExportFailing": (exporter.UID, "OTLP export failures"),
    "TTFTExporterConfigReloadFailed": (exporter.UID, "Config reload"),
    "TTFTExporterBackgroundErrors": (exporter.UID, "Background loops: errors and down"),
    "TTFTExporterBackgroundLoopDown": (exporter.UID, "Background loops: errors and down"),
    "FluxStreamDown": (flux.UID, "Stream up"),
    "FluxStreamStale": (flux.UID, "Staleness (time since last message)"),
    "FluxEventRateDrop": (flux.UID, "Events/s: derived vs reported"),
    "FluxCanaryPropagationSlow": (flux.UID, "Canary publish and propagation (p95)"),
    "FluxCanaryFailing": (flux.UID, "Canary failures by reason"),
}


def runbook_panels(panel_ids: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The map as written to dashboards/runbook-panels.yaml: per alert the dashboard
    uid, the panel id and title, and the Grafana path that opens that panel alone
    (prefix it with the Grafana base URL)."""
    out: dict[str, Any] = {}
    for alert, (uid, title) in sorted(ALERT_PANELS.items()):
        panel_id = panel_ids[uid][title]
        out[alert] = {
            "dashboard_uid": uid,
            "panel_id": panel_id,
            "panel_title": title,
            "path": f"/d/{uid}/?viewPanel={panel_id}",
        }
    return out


DASHBOARD_LINE = re.compile(r"^\*\*Dashboard\.\*\* .*\n\n", re.M)


def with_dashboard_lines(runbooks: str, panels: dict[str, Any], titles: dict[str, str]) -> str:
    """docs/runbooks.md with a **Dashboard.** paragraph first in each alert's section
    (replacing the one there): the panel that shows the alert's problem."""
    out: list[str] = []
    sections = re.split(r"(?m)^(?=## )", runbooks)
    for section in sections:
        heading, _, body = section.partition("\n")
        name = heading[3:].strip() if heading.startswith("## ") else ""
        entry = panels.get(name)
        if entry is None:
            out.append(section)
            continue
        body = body.lstrip("\n")
        body = DASHBOARD_LINE.sub("", body, count=1) if body.startswith("**Dashboard.**") else body
        line = (
            f"**Dashboard.** {titles[entry['dashboard_uid']]}, panel "
            f'"{entry["panel_title"]}": `<grafana>{entry["path"]}`.\n\n'
        )
        out.append(f"{heading}\n\n{line}{body}")
    return "".join(out)
