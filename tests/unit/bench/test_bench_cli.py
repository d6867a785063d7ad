"""`ttft-exporter bench` (bench/cli.py; named apart from tests/unit/test_cli.py, which pytest would
confuse with it) end to end against the simulator (in a thread of its own:
the command runs its own event loop), `compare` and `merge` on its files, and usage
errors: one line naming the flag, exit code 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest

from ttft_exporter.bench.results import read_results, results_schema
from ttft_exporter.cli import run


def test_a_run_writes_table_json_csv_and_plots(
    sim_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ttft.yml"
    config.write_text(
        "targets:\n"
        f"  - {{name: sim, protocol: openai-chat, url: '{sim_url}', model: m, prompt: hi,"
        " max_tokens: 3}\n"
    )
    out_dir = tmp_path / "out"
    argv = ["bench", "--config.file", str(config), "--target", "sim", "--concurrency", "1,2"]
    argv += ["--requests", "4", "--slo", "ttft=5s", "--output-dir", str(out_dir), "--seed", "1"]
    assert run(argv) == 0
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].split()[:2] == ["step", "load"] and len(table) == 3
    # Not a terminal: plain progress lines, no carriage returns.
    assert "step 1/2 c=1: started" in captured.err and "\r" not in captured.err
    assert "approximate token counts" in captured.err
    doc = json.loads((out_dir / "results.json").read_text())
    jsonschema.validate(doc, results_schema())
    results = read_results(out_dir / "results.json")
    assert [s.stats.requests for s in results.steps] == [4, 4]
    assert {r.output_tokens for r in results.records} == {3}  # ignore_eos: fixed length
    assert results.run.fixed_output_tokens == 3 and results.run.seed == 1
    assert (out_dir / "results.csv").read_text().count("\n") == len(results.records) + 1
    for name in ("latency", "throughput"):
        assert (out_dir / f"{name}.png").stat().st_size > 0
        assert (out_dir / f"{name}.svg").stat().st_size > 0

    # compare: the run against itself, every delta zero.
    capsys.readouterr()
    assert (
        run(["bench", "compare", str(out_dir / "results.json"), str(out_dir / "results.json")]) == 0
    )
    text = capsys.readouterr().out
    assert "ttft p50 ms" in text and "+0.0 (+0%)" in text


def test_workers_merge_into_one_run(
    sim_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = []
    # One worker on each event loop: their records are the same kind of data.
    for index, loop in ((0, "asyncio"), (1, "uvloop")):
        # As in a Kubernetes Indexed Job: the index comes from the environment.
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
        out_dir = tmp_path / f"w{index}"
        argv = ["bench", "--url", sim_url, "--model", "m", "--concurrency", "2", "--requests", "3"]
        argv += ["--seed", "5", "--output-dir", str(out_dir), "--no-plots", "--max-tokens", "2"]
        assert run([*argv, "--event-loop", loop]) == 0
        assert f"event loop {loop}" in capsys.readouterr().err
        paths.append(out_dir / "results.json")
    parts = [read_results(p) for p in paths]
    assert [p.run.event_loop for p in parts] == ["asyncio", "uvloop"]
    assert all(r.success and r.output_tokens == 2 for p in parts for r in p.records)
    # Disjoint seeds per worker: seed + index x 1000003.
    assert [p.run.seed for p in parts] == [5, 5 + 1_000_003]
    assert {r.worker for r in parts[1].records} == {1}
    merged_path = tmp_path / "merged.json"
    assert run(["bench", "merge", str(merged_path), *map(str, paths)]) == 0
    merged = read_results(merged_path)
    assert merged.run.workers == 2 and merged.steps[0].load == 4
    assert merged.steps[0].stats.requests == 6
    assert len(merged.records) == sum(len(p.records) for p in parts)
    assert merged_path.with_suffix(".csv").exists()


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--model", "m"], "--url"),
        (["--url", "http://127.0.0.1:1/v1"], "--model"),
        (["--url", "http://h/v1", "--model", "m", "--concurrency", "0"], "--concurrency"),
        (["--url", "http://h/v1", "--model", "m", "--concurrency", "2,x"], "--concurrency"),
        (["--url", "http://h/v1", "--model", "m", "--rate", "1", "--concurrency", "2"], "--rate"),
        (["--url", "http://h/v1", "--model", "m", "--requests", "0"], "--requests"),
        (["--url", "http://h/v1", "--model", "m", "--duration", "soon"], "--duration"),
        (
            ["--url", "http://h/v1", "--model", "m", "--requests", "1", "--duration", "1s"],
            "--requests",
        ),
        (["--url", "http://h/v1", "--model", "m", "--slo", "ttft=fast"], "--slo"),
        (["--url", "http://h/v1", "--model", "m", "--profile", "sweep"], "--slo"),
        (["--url", "http://h/v1", "--model", "m", "--warmup", "later"], "--warmup"),
        (
            ["--url", "http://h/v1", "--model", "m", "--slo.min-goodput", "150%"],
            "--slo.min-goodput",
        ),
        (["--url", "http://h/v1", "--model", "m", "--timeout", "0s"], "--timeout"),
        (["--url", "http://h/v1", "--model", "m", "--prompt.tokens", "0"], "--prompt.tokens"),
        (["--url", "http://h/v1", "--model", "m", "--prompts", "/nonexistent.jsonl"], "--prompts"),
        (["--url", "http://h/v1", "--model", "m", "--protocol", "smtp"], "protocol"),
        (["--url", "http://h/v1", "--model", "m", "--bogus"], "--bogus"),
        (["--config.file", "/nonexistent.yml", "--target", "x"], "--config.file"),
        (["--config.file", "x.yml"], "--target"),
        (["compare", "/nonexistent-a.json", "/nonexistent-b.json"], "/nonexistent-a.json"),
        (["merge", "out.json"], "IN.json"),
        (["--url", "http://h/v1", "--model", "m", "--event-loop", "trio"], "--event-loop"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_usage_errors_name_the_flag_and_exit_1(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["bench", *argv]) == 1
    err = capsys.readouterr().err
    # The first line names the flag (a config file's problems follow it, one a line).
    first = err.splitlines()[0]
    assert first.startswith("ttft-exporter bench: ") and flag in first


def test_schema_subcommand_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["bench", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == results_schema()


def test_uvloop_asked_for_but_not_installed_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import uvloop` raise ImportError, as on a machine
    # without it; `auto` then falls back to asyncio's loop instead.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    argv = ["bench", "--url", "http://127.0.0.1:1/v1", "--model", "m", "--event-loop", "uvloop"]
    assert run(argv) == 1
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("ttft-exporter bench: --event-loop=uvloop: uvloop is not installed")
