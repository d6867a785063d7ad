"""Rule groups to YAML text: deterministic, multi-line expressions as blocks,
templates in single quotes (double quotes inside templates break double-quoted YAML),
and each rule's `_comment` as a `#` line above it."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import yaml

from ttft_exporter.rules.common import Group

__all__ = ["dump_yaml", "render_groups"]


class _Dumper(yaml.SafeDumper):
    """SafeDumper with our string styles."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    if "{{" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    """YAML in the rule files' style: multi-line strings as blocks, templates quoted."""
    return _dump(data)


def _dump(data: Any) -> str:
    # A huge width: PyYAML would otherwise fold long annotations over several lines.
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, width=1_000_000, allow_unicode=True, indent=2
    )


def render_groups(groups: Sequence[Group], header: Sequence[str]) -> str:
    """A rule file: `header` lines as comments, then the groups."""
    out = [f"# {line}".rstrip() + "\n" for line in header]
    if not groups:
        return "".join(out) + "groups: []\n"
    out.append("groups:\n")
    for group in groups:
        out.append(textwrap.indent(_dump([{"name": group.name}]), "  "))
        if not group.rules:
            out.append("    rules: []\n")
            continue
        out.append("    rules:\n")
        for rule in group.rules:
            clean = {k: v for k, v in rule.items() if not k.startswith("_")}
            comment = rule.get("_comment")
            if comment:
                out.append(f"      # {comment}\n")
            out.append(textwrap.indent(_dump([clean]), "      "))
    return "".join(out)
