"""Benchmark: cost of redacting one text with 20 secrets (issue #8 item 13).

Redaction runs on the event loop for every failure detail, debug line and canary
error, so it must stay linear and cheap. Texts of 4 KiB (an error body read) and
1 MiB, plain and hostile (all escapes, endless secret prefixes); milliseconds per call,
best of a few rounds.

Usage: ``python -m benchmarks.bench_redact``
"""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Callable

from ttft_exporter.redact import Redactor


def _texts(secrets: list[str], size: int, rnd: random.Random) -> dict[str, str]:
    escaped = "".join(f"\\u{ord(c):04x}" for c in secrets[3])
    return {
        "random printable": "".join(rnd.choice(string.printable) for _ in range(size)),
        "json words": json.dumps({"error": " ".join("word" for _ in range(size // 5))})[:size],
        "with secrets": (("lorem ipsum " * 30) + secrets[3]) * (size // 400),
        "json-escaped": (("lorem \\u00e9 " * 30) + escaped) * (size // 600),
        "all escapes (hostile)": "\\u0041" * (size // 6),
        "prefix spam (hostile)": secrets[0][:8] * (size // 8),
    }


def _best_ms(call: Callable[[], object], budget: float = 0.5) -> float:
    best = float("inf")
    deadline = time.perf_counter() + budget
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    rnd = random.Random(1)
    alphabet = string.ascii_letters + string.digits + "-_"
    secrets = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(20, 60))) for _ in range(20)]
    print(f"build: {_best_ms(lambda: Redactor(secrets)):.3f} ms for 20 secrets")
    redactor = Redactor(secrets)
    for size in (4096, 1 << 20):
        for name, text in _texts(secrets, size, rnd).items():
            ms = _best_ms(lambda text=text: redactor.redact(text))  # type: ignore[misc]
            print(f"{size:>8} B  {name:<24} {ms:9.3f} ms")


if __name__ == "__main__":
    main()
