"""A real Prometheus (the 2.42 binary the test command installs) in a directory of its
own: the one launcher of the integration tests and the dashboard stack. Each caller
brings its own config; `scrape_config` is the usual one (scrape one loopback port every
second). Stopped by its PID: SIGTERM, then SIGKILL if it has not exited in 10 s."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import free_port, terminate

__all__ = ["PrometheusServer", "scrape_config"]

# How long a stopping Prometheus gets for each signal (it flushes its head block).
_STOP_GRACE = 10.0
# The end of the log a failure message quotes.
_TAIL = 3000


def scrape_config(job: str, target_port: int, *, rule_files: Sequence[Path] = ()) -> dict[str, Any]:
    """A config scraping 127.0.0.1:`target_port` as `job` every second (and evaluating
    `rule_files` every second)."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
    }
    if rule_files:
        config["rule_files"] = [str(path) for path in rule_files]
    config["scrape_configs"] = [
        {
            "job_name": job,
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
        }
    ]
    return config


class PrometheusServer:
    """`binary` run on `config` (written to `directory`/prometheus.yml), its TSDB and
    log (prometheus.log) in `directory`, listening on 127.0.0.1:`port` (default: a
    free one) with extra `flags`."""

    def __init__(
        self,
        binary: str,
        directory: Path,
        config: Mapping[str, Any],
        *,
        port: int | None = None,
        flags: Sequence[str] = (),
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.flags = tuple(flags)
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = directory / "prometheus.yml"
        self.log = directory / "prometheus.log"
        self.config.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (fork and exec only: it is not ready yet, poll its API)."""
        with self.log.open("wb") as out:
            self._popen = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    *self.flags,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )

    def tail(self) -> str:
        """The end of its log ("" before it wrote one)."""
        return self.log.read_text(errors="replace")[-_TAIL:] if self.log.exists() else ""

    def check_running(self) -> None:
        """Fail the test, quoting the log, if the server has exited."""
        assert self._popen is not None, "not started"
        code = self._popen.poll()
        if code is not None:
            pytest.fail(f"prometheus exited with {code}:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it outlives the grace period. Blocks: from a
        coroutine use `stop_async`."""
        if self._popen is not None:
            terminate(self._popen, _STOP_GRACE)

    async def stop_async(self) -> None:
        """`stop` off the event loop (which may still serve the exporter it scraped)."""
        await asyncio.to_thread(self.stop)
