"""CPU throttling of the exporter's own cgroup (CFS bandwidth control): pure parsers
for `cpu.stat`, `/proc/self/cgroup` and `/proc/self/mountinfo`, and a finder for the
`cpu.stat` file that counts the process's throttling (cgroup v2, else the v1 cpu
controller). A leaf: no metrics, no event loop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CPUThrottling",
    "CgroupMount",
    "find_cpu_stat",
    "parse_cpu_stat",
    "parse_mountinfo",
    "parse_proc_cgroup",
    "read_cpu_stat",
]

log = logging.getLogger("ttft_exporter.cgroup")

# cpu.stat is ten lines or so; /proc/self/cgroup a dozen; mountinfo a few hundred lines
# in a busy pod. Anything far beyond is not what we think it is: read no more.
CPU_STAT_LIMIT = 16 * 1024
PROC_FILE_LIMIT = 1 << 20
_MAX_LINES = 4096


@dataclass(frozen=True, slots=True)
class CPUThrottling:
    """Cumulative CFS bandwidth counters of a cgroup since it was created."""

    periods: int  # enforcement periods with runnable tasks (nr_periods)
    throttled_periods: int  # of which the cgroup ran out of quota (nr_throttled)
    throttled_seconds: float  # total time its tasks were held back


def parse_cpu_stat(text: str) -> CPUThrottling | None:
    """The throttling counters of a `cpu.stat` file, or None when it has none.

    cgroup v2: `nr_periods`, `nr_throttled`, `throttled_usec` (microseconds). cgroup
    v1 (cpu controller): `nr_periods`, `nr_throttled`, `throttled_time` (nanoseconds).
    A v2 file without the cpu controller enabled (or of the root cgroup) has only
    `usage_usec` and friends: None, since nothing says whether it was throttled.
    Lines that are not `key <non-negative integer>` are skipped.
    """
    values: dict[str, int] = {}
    for line in text.splitlines()[:_MAX_LINES]:
        key, _, value = line.strip().partition(" ")
        if value.isdigit():  # ASCII digits only: no sign, no exponent, no spaces
            values[key] = int(value)
    periods = values.get("nr_periods")
    throttled = values.get("nr_throttled")
    if periods is None or throttled is None:
        return None
    if "throttled_usec" in values:
        seconds = values["throttled_usec"] / 1e6
    elif "throttled_time" in values:
        seconds = values["throttled_time"] / 1e9
    else:
        return None
    return CPUThrottling(periods, throttled, seconds)


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """`/proc/self/cgroup` as {controller: path}; the v2 (unified) entry `0::/path`
    is under the key "" and v1 named hierarchies (`name=systemd`) keep their name.
    A v1 line for several controllers (`4:cpu,cpuacct:/x`) gives each one."""
    out: dict[str, str] = {}
    for line in text.splitlines()[:_MAX_LINES]:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            out.setdefault(controller, path)
    return out


@dataclass(frozen=True, slots=True)
class CgroupMount:
    """A mounted cgroup hierarchy: `root` is the cgroup shown at `mountpoint`."""

    version: int  # 1 or 2
    root: str
    mountpoint: str
    controllers: frozenset[str]  # v1 only: the controllers of the hierarchy


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup (v1) and cgroup2 mounts of a `/proc/self/mountinfo` text."""
    mounts: list[CgroupMount] = []
    for line in text.splitlines()[:_MAX_LINES]:
        head, sep, tail = line.partition(" - ")
        fields, after = head.split(), tail.split()
        if not sep or len(fields) < 5 or not after:
            continue
        fstype = after[0]
        root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup2":
            mounts.append(CgroupMount(2, root, mountpoint, frozenset()))
        elif fstype == "cgroup" and len(after) >= 3:
            mounts.append(CgroupMount(1, root, mountpoint, frozenset(after[2].split(","))))
    return mounts


def _within(mount: CgroupMount, cgroup_path: str) -> Path:
    """Where `cgroup_path` is under `mount`: relative to the cgroup the mount shows
    (a container without a cgroup namespace sees its own cgroup as the mount's root)."""
    root = mount.root.rstrip("/")
    rel = cgroup_path
    if root and (cgroup_path == root or cgroup_path.startswith(root + "/")):
        rel = cgroup_path[len(root) :]
    return Path(mount.mountpoint) / rel.lstrip("/")


def _read(path: Path, limit: int) -> str | None:
    try:
        with path.open("rb") as fh:
            return fh.read(limit).decode("ascii", "replace")
    except OSError:
        return None


def _candidates(root: Path) -> list[Path]:
    """The `cpu.stat` files that may count this process's throttling, best first."""
    proc = _read(root / "proc/self/cgroup", PROC_FILE_LIMIT)
    cgroups = parse_proc_cgroup(proc) if proc is not None else {}
    info = _read(root / "proc/self/mountinfo", PROC_FILE_LIMIT)
    mounts = parse_mountinfo(info) if info is not None else []
    out: list[Path] = []
    v2_path, v1_path = cgroups.get(""), cgroups.get("cpu")
    for mount in mounts:
        if mount.version == 2 and v2_path is not None:
            out.append(_within(mount, v2_path))
    for mount in mounts:
        if mount.version == 1 and "cpu" in mount.controllers and v1_path is not None:
            out.append(_within(mount, v1_path))
            out.append(Path(mount.mountpoint))
    # No mountinfo (a sandbox hiding /proc): the conventional mount points.
    fs = Path("sys/fs/cgroup")
    if v2_path is not None:
        out.append(fs / v2_path.lstrip("/"))
    if v1_path is not None:
        out += [fs / "cpu" / v1_path.lstrip("/"), fs / "cpu,cpuacct" / v1_path.lstrip("/")]
    found = (root / p.relative_to("/") if p.is_absolute() else root / p for p in out)
    return list(dict.fromkeys(found))


def find_cpu_stat(root: Path = Path("/")) -> Path | None:
    """The `cpu.stat` file holding the throttling counters of this process's cgroup,
    or None (not Linux, no cpu controller, the root cgroup, /sys not mounted).

    `root` is the file system root, for tests. Blocking (reads a few /proc files):
    call it once, off the event loop. NOTE: only the process's own cgroup is read;
    a quota set on an ancestor (a pod-level limit) throttles it without counting here.
    """
    for directory in _candidates(root):
        path = directory / "cpu.stat"
        text = _read(path, CPU_STAT_LIMIT)
        if text is not None and parse_cpu_stat(text) is not None:
            return path
    return None


def read_cpu_stat(path: Path) -> CPUThrottling | None:
    """The counters now, or None if the file cannot be read or has none. A sysfs
    read of a few hundred bytes: microseconds, fine on the loop every 100 ms."""
    text = _read(path, CPU_STAT_LIMIT)
    return parse_cpu_stat(text) if text is not None else None
