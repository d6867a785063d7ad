"""Sharding targets over replicas the way Prometheus does it (`hashmod`).

A replica with shard index `i` of `n` probes only the targets (and watches only the Flux
instances) whose name hashes to `i`. The hash is Prometheus' `hashmod` relabel action:
the MD5 of the name, its last 8 bytes as a big-endian integer, modulo `n`. It is stable
across restarts, hosts and Python versions (unlike `hash()`, which is salted per
process), and a user can reproduce the assignment with a Prometheus relabel rule."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Self, TypeVar

from pydantic import Field, model_validator

from ttft_exporter.validation import StrictModel, field_rule

__all__ = ["MAX_SHARDS", "Shard", "ShardConfig", "hashmod"]

MAX_SHARDS = 10_000

T = TypeVar("T")


def hashmod(name: str, modulus: int) -> int:
    """Prometheus' `hashmod` of `name`: MD5, last 8 bytes big-endian, modulo `modulus`."""
    digest = hashlib.md5(name.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


class ShardConfig(StrictModel):
    """`shard:` in the config file; `--shard.index` and `--shard.count` override it."""

    index: int = Field(0, ge=0, description="This replica's shard, from 0 to count - 1.")
    count: int = Field(1, ge=1, le=MAX_SHARDS, description="How many replicas share the targets.")

    @model_validator(mode="after")
    def _index_below_count(self) -> Self:
        if self.index >= self.count:
            raise field_rule("index", f"must be below count ({self.count})")
        return self


@dataclass(frozen=True)
class Shard:
    """Which names this replica owns."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be between 1 and {MAX_SHARDS}, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(
                f"shard index must be between 0 and {self.count - 1}, not {self.index}"
            )

    @classmethod
    def from_config(cls, config: ShardConfig) -> Shard:
        return cls(config.index, config.count)

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owns(self, name: str) -> bool:
        """Whether the target or Flux instance called `name` is this replica's."""
        return self.count == 1 or hashmod(name, self.count) == self.index

    def select(self, items: Iterable[T], name: Callable[[T], str]) -> list[T]:
        """The items this replica owns, in their order."""
        return [item for item in items if self.owns(name(item))]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
