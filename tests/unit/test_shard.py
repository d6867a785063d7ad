"""Tests for ttft_exporter.shard: N shards partition any target list exactly, stably, and
the scheduler, Flux and the command line follow the shard. (That the hash is Prometheus'
own `hashmod` is checked against a real Prometheus in tests/integration/test_shard_hashmod.py.)"""

from __future__ import annotations

import random
import string
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiojobs
import pytest

from tests.conftest import SimFactory, make_config
from ttft_exporter.clock import SystemClock
from ttft_exporter.config import parse_config
from ttft_exporter.errors import ConfigError
from ttft_exporter.executor import ProbeExecutor
from ttft_exporter.history import History
from ttft_exporter.scheduler import ProbeScheduler
from ttft_exporter.selfmetrics import ExporterMetrics
from ttft_exporter.shard import MAX_SHARDS, Shard, hashmod
from ttft_exporter.sim.llm import ModelBehaviour
from ttft_exporter.sinks.prometheus.series import MetricStore
from ttft_exporter.sinks.prometheus.sink import PrometheusSink
from ttft_exporter.supervise import Supervisor

ALPHABET = string.ascii_letters + string.digits + "-_.:/é漢🙂"


def random_names(rng: random.Random) -> list[str]:
    count = rng.randrange(0, 300)
    names = {
        "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 40))) for _ in range(count)
    }
    return sorted(names)


@pytest.mark.parametrize("seed", range(40))
def test_shards_partition_any_target_list_exactly(seed: int) -> None:
    # A property test over 40 seeded random lists and shard counts (hypothesis is not a
    # dependency): every name is owned by exactly one shard, and order is kept.
    rng = random.Random(seed)
    names = random_names(rng)
    count = rng.choice([1, 2, 3, 5, 8, 13, 100])
    parts = [Shard(i, count).select(names, str) for i in range(count)]
    owners = {name: [i for i, part in enumerate(parts) if name in part] for name in names}
    assert all(len(found) == 1 for found in owners.values()), owners
    assert sorted(n for part in parts for n in part) == names
    for part in parts:
        assert part == [n for n in names if n in part]


def test_the_largest_shard_count_still_gives_each_name_one_owner() -> None:
    # MAX_SHARDS shards x 300 names is too many pairs to test exhaustively on a busy
    # machine: each name's owner owns it and a sample of other shards does not.
    rng = random.Random(7)
    for name in random_names(rng):
        owner = hashmod(name, MAX_SHARDS)
        assert Shard(owner, MAX_SHARDS).owns(name)
        for other in rng.sample(range(MAX_SHARDS), 50):
            assert Shard(other, MAX_SHARDS).owns(name) == (other == owner)


def test_assignment_is_stable_across_processes() -> None:
    # hash() is salted per process; the shard must not be. A child process with another
    # hash seed computes the same assignment.
    names = [f"target-{i}" for i in range(200)]
    here = [hashmod(n, 7) for n in names]
    code = (
        "from ttft_exporter.shard import hashmod; "
        "print([hashmod(f'target-{i}', 7) for i in range(200)])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.strip() == str(here)


def test_known_values_pin_the_algorithm() -> None:
    # MD5 of the name, last 8 bytes big-endian, modulo n: Prometheus' hashmod. Values
    # computed from the definition; tests/integration checks them against Prometheus.
    import hashlib

    for name in ("vllm-a", "ollama", "sim-anthropic", ""):
        digest = hashlib.md5(name.encode(), usedforsecurity=False).digest()
        assert hashmod(name, 1000) == int.from_bytes(digest[8:], "big") % 1000
    assert {hashmod("x", 1)} == {0}


@pytest.mark.parametrize(
    ("index", "count", "message"),
    [
        (2, 2, "between 0 and 1"),
        (-1, 3, "between 0 and 2"),
        (0, 0, "between 1 and"),
        (0, MAX_SHARDS + 1, "between 1 and"),
    ],
)
def test_bad_shards_are_refused(index: int, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Shard(index, count)


def test_config_shard_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"shard": {"index": 3, "count": 3}, "targets": []})
    assert "shard.index: must be below count (3)" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config({"shard": {"index": 0, "count": 0, "bogus": 1}, "targets": []})
    text = str(caught.value)
    assert "shard.count" in text
    assert "shard.bogus" in text


@pytest.fixture
async def jobs() -> AsyncIterator[aiojobs.Scheduler]:
    scheduler = aiojobs.Scheduler(limit=None, close_timeout=5.0)
    yield scheduler
    await scheduler.close()


async def test_each_replica_runs_only_its_shard(
    jobs: aiojobs.Scheduler, make_llm_sim: SimFactory
) -> None:
    sim = await make_llm_sim(m=ModelBehaviour(ttft=0.0, itl=0.0, tokens=1))
    names = [f"t{i}" for i in range(12)]
    config = make_config(
        *({"name": n, "model": "m", "url": f"{sim.url}/v1", "interval": 60.0} for n in names)
    )
    schedulers = []
    stores = []
    for _ in range(3):
        metrics = ExporterMetrics()
        stores.append(MetricStore())
        executor = ProbeExecutor(
            clock=SystemClock(), concurrency=16, metrics=metrics, history=History(10)
        )
        schedulers.append(
            ProbeScheduler(
                executor=executor,
                sink=PrometheusSink(stores[-1]),
                jobs=jobs,
                metrics=metrics,
                supervisor=Supervisor(metrics),
                start_jitter=False,
            )
        )
    try:
        for index, scheduler in enumerate(schedulers):
            await scheduler.apply(config, Shard(index, 3))
        running = [sorted(s.runners) for s in schedulers]
        assert sorted(n for part in running for n in part) == sorted(names)
        for index, part in enumerate(running):
            assert part == sorted(n for n in names if hashmod(n, 3) == index)
        # Re-sharding on reload (3 -> 1 replica): the survivor takes every target, and a
        # target that moves away from a replica is stopped and its series dropped.
        await schedulers[0].apply(config, Shard(0, 1))
        assert sorted(schedulers[0].runners) == sorted(names)
        moved = running[1][0]
        await schedulers[1].apply(config, Shard(0, 2) if hashmod(moved, 2) else Shard(1, 2))
        assert moved not in schedulers[1].runners
        assert stores[1].of_target(moved) == []
    finally:
        for scheduler in schedulers:
            await scheduler.close()


def test_config_file_shard_is_the_default_and_the_flags_win() -> None:
    config = make_config({"name": "a", "model": "m", "url": "http://127.0.0.1:9/v1"})
    assert Shard.from_config(config.shard) == Shard(0, 1)
    sharded = parse_config(
        {
            "shard": {"index": 1, "count": 4},
            "targets": [
                {
                    "name": "a",
                    "model": "m",
                    "url": "http://127.0.0.1:9/v1",
                    "protocol": "openai-chat",
                    "prompt": "hi",
                }
            ],
        }
    )
    assert Shard.from_config(sharded.shard) == Shard(1, 4)
