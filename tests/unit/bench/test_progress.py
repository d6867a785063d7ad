"""The live display: a bar redrawn in place on a terminal, plain lines otherwise;
the final table flags client-bound steps and missed SLOs."""

from __future__ import annotations

import io

from tests.unit.bench.factory import make_record, quiet_watch, results_of, spread_records
from ttft_exporter.bench.profile import Step, Stop, Warmup
from ttft_exporter.bench.progress import Progress, format_table
from ttft_exporter.bench.results import SweepResult


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


STEP = Step(0, "concurrency", 8, Stop(requests=4), Warmup(requests=1))


def _feed(progress: Progress, clock: FakeClock) -> None:
    progress.start_step(STEP)
    progress.on_record(make_record(warmup=True))
    for ttft in (0.1, 0.2, 0.3):
        clock.now += 1.0
        progress.on_record(make_record(ttft=ttft, output_tokens=10))
    clock.now += 10.0
    progress.on_record(make_record(success=False, reason="timeout"))


def test_a_terminal_gets_one_bar_redrawn_in_place() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(out, tty=True, steps=2, clock=clock)
    _feed(progress, clock)
    progress.end_step(results_of(spread_records(0, 1), [8]).steps[0])
    text = out.getvalue()
    assert text.count("\n") == 1  # one line per step, finished by the newline
    last = text.rsplit("\r\x1b[2K", 1)[1]
    assert last.startswith("step 1/2       c=8 [########################] 4/4 err 1")
    assert "ttft p50 200 p99 298 ms" in last


def test_no_terminal_gets_plain_lines_every_few_seconds() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = Progress(out, tty=False, steps=1, clock=clock)
    _feed(progress, clock)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "step 1/1 c=8: started"
    # 13 s of records: one line (at 13 s, 5 s or more after the start), not one per record.
    assert len(lines) == 2 and "4/4 err 1" in lines[-1]


def test_final_table_flags_client_bound_steps_and_missed_slos() -> None:
    results = results_of(
        spread_records(0, 5) + spread_records(1, 5, ttft0=0.5), [1, 64], slo={"ttft": 0.2}
    )
    bound = quiet_watch(client_bound=True, why=["client CPU 0.97 cores (one loop: at most 1)"])
    steps = [results.steps[0], results.steps[1].model_copy(update={"self_watch": bound})]
    table = format_table(steps, SweepResult(max_load=1, stopped_by="client"))
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["step", "load", "reqs", "err"]
    assert lines[1].split()[-1] == "ok" and "100%" in lines[1]
    assert lines[2].split()[-1] == "BOUND" and "0%*" in lines[2]
    assert "step 2: client-bound: client CPU 0.97 cores" in table
    assert lines[-1] == "sweep: highest load meeting the SLOs: 1 (stopped by client)"
