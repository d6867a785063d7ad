"""The cgroup cpu.stat, /proc/self/cgroup and mountinfo parsers (pure, fixture texts of
real kernels) and the finder over a fake file system root of real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttft_exporter.cgroup import (
    CgroupMount,
    CPUThrottling,
    find_cpu_stat,
    parse_cpu_stat,
    parse_mountinfo,
    parse_proc_cgroup,
    read_cpu_stat,
)

# cgroup v2 with the cpu controller enabled and a quota (a Kubernetes container).
V2_THROTTLED = """\
usage_usec 2433097191
user_usec 2191838636
system_usec 241258554
core_sched.force_idle_usec 0
nr_periods 81731
nr_throttled 1903
throttled_usec 95372213
nr_bursts 0
burst_usec 0
"""
# cgroup v2 without the cpu controller (or the root cgroup): no throttling fields.
V2_NO_CPU_CONTROLLER = """\
usage_usec 2433097191
user_usec 2191838636
system_usec 241258554
nice_usec 0
"""
# cgroup v1, cpu controller (throttled_time in nanoseconds).
V1 = """\
nr_periods 120
nr_throttled 7
throttled_time 412345678
nr_bursts 0
burst_time 0
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (V2_THROTTLED, CPUThrottling(81731, 1903, 95.372213)),
        (V1, CPUThrottling(120, 7, 0.412345678)),
        (V2_NO_CPU_CONTROLLER, None),
        ("", None),
        ("nr_periods 5\nnr_throttled 1\n", None),  # no time field: not a cpu.stat we know
        # Junk lines and signs are skipped, not guessed at.
        ("nr_periods -5\nnr_throttled 1\nthrottled_usec 3\n", None),
        ("garbage\n\x00\xff\nnr_periods 5\nnr_throttled 1\nthrottled_usec 2000000\n",
         CPUThrottling(5, 1, 2.0)),
        ("nr_periods 1e3\nnr_throttled 1\nthrottled_usec 3\n", None),
    ],
    ids=["v2", "v1", "v2-no-controller", "empty", "no-time", "negative", "junk", "exponent"],
)  # fmt: skip
def test_parse_cpu_stat(text: str, expected: CPUThrottling | None) -> None:
    assert parse_cpu_stat(text) == expected


def test_parse_proc_cgroup_v1_hybrid_and_v2() -> None:
    hybrid = (
        "12:cpu,cpuacct:/kubepods/burstable/pod1/abc\n"
        "9:name=systemd:/\n"
        "4:memory:/x\n"
        "0::/kubepods/burstable/pod1/abc\n"
        "not a line\n"
    )
    assert parse_proc_cgroup(hybrid) == {
        "cpu": "/kubepods/burstable/pod1/abc",
        "cpuacct": "/kubepods/burstable/pod1/abc",
        "name=systemd": "/",
        "memory": "/x",
        "": "/kubepods/burstable/pod1/abc",
    }
    assert parse_proc_cgroup("0::/\n") == {"": "/"}


def test_parse_mountinfo_finds_cgroup_mounts_with_escapes() -> None:
    text = (
        "22 1 0:21 / / rw,relatime - overlay overlay rw\n"
        "30 22 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
        "31 30 0:27 /kubepods/pod1/abc /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup "
        "rw,cpu,cpuacct\n"
        "32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "33 30 0:29 / /sys/fs/cgroup/uni\\040fied rw - cgroup2 cgroup2 rw,nsdelegate\n"
        "broken line\n"
    )
    assert parse_mountinfo(text) == [
        CgroupMount(1, "/kubepods/pod1/abc", "/sys/fs/cgroup/cpu,cpuacct",
                    frozenset({"rw", "cpu", "cpuacct"})),
        CgroupMount(1, "/", "/sys/fs/cgroup/memory", frozenset({"rw", "memory"})),
        CgroupMount(2, "/", "/sys/fs/cgroup/uni fied", frozenset()),
    ]  # fmt: skip


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_finds_the_v2_cpu_stat_of_the_process_cgroup(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/kubepods/pod1/abc\n",
            "proc/self/mountinfo": "33 30 0:29 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "sys/fs/cgroup/cpu.stat": V2_NO_CPU_CONTROLLER,
            "sys/fs/cgroup/kubepods/pod1/abc/cpu.stat": V2_THROTTLED,
        },
    )
    found = find_cpu_stat(tmp_path)
    assert found == tmp_path / "sys/fs/cgroup/kubepods/pod1/abc/cpu.stat"
    assert read_cpu_stat(found) == CPUThrottling(81731, 1903, 95.372213)


def test_hybrid_host_falls_back_to_the_v1_cpu_controller(tmp_path: Path) -> None:
    # This machine's layout: cgroup2 mounted at unified/ without the cpu controller.
    _tree(
        tmp_path,
        {
            "proc/self/cgroup": "1:cpu:/\n2:cpuacct:/\n0::/\n",
            "proc/self/mountinfo": (
                "40 30 0:40 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
                "41 30 0:41 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
            ),
            "sys/fs/cgroup/unified/cpu.stat": V2_NO_CPU_CONTROLLER,
            "sys/fs/cgroup/cpu/cpu.stat": V1,
        },
    )
    assert find_cpu_stat(tmp_path) == tmp_path / "sys/fs/cgroup/cpu/cpu.stat"


def test_container_without_cgroup_namespace_sees_its_cgroup_at_the_mount_root(
    tmp_path: Path,
) -> None:
    # /proc/self/cgroup names the host path; the mount shows that cgroup as its root.
    _tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:cpu,cpuacct:/kubepods/pod1/abc\n",
            "proc/self/mountinfo": (
                "31 30 0:27 /kubepods/pod1/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup "
                "rw,cpu,cpuacct\n"
            ),
            "sys/fs/cgroup/cpu,cpuacct/cpu.stat": V1,
        },
    )
    assert find_cpu_stat(tmp_path) == tmp_path / "sys/fs/cgroup/cpu,cpuacct/cpu.stat"


def test_without_mountinfo_the_conventional_mount_points_are_tried(tmp_path: Path) -> None:
    _tree(tmp_path, {"proc/self/cgroup": "0::/a\n", "sys/fs/cgroup/a/cpu.stat": V2_THROTTLED})
    assert find_cpu_stat(tmp_path) == tmp_path / "sys/fs/cgroup/a/cpu.stat"


@pytest.mark.parametrize(
    "files",
    [
        {},  # not Linux, or /proc hidden
        {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.stat": V2_NO_CPU_CONTROLLER},
        {"proc/self/cgroup": "0::/a\n"},  # /sys not mounted
    ],
    ids=["nothing", "root-cgroup", "no-sysfs"],
)
def test_no_counters_found(tmp_path: Path, files: dict[str, str]) -> None:
    _tree(tmp_path, files)
    assert find_cpu_stat(tmp_path) is None


def test_read_cpu_stat_of_a_vanished_file_is_none(tmp_path: Path) -> None:
    assert read_cpu_stat(tmp_path / "cpu.stat") is None
