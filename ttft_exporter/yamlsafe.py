"""YAML for config files, bounded: a duplicate key is an error (not "last wins"), and a
document whose aliases expand past a node budget or a depth (a YAML bomb) is refused
before a single Python object is built from it."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ttft_exporter.errors import YAMLLimitError

__all__ = ["MAX_DEPTH", "MAX_NODES", "YAMLLimitError", "load_yaml"]

# A 4 MiB config has far fewer nodes; a bomb has billions.
MAX_NODES = 1_000_000
MAX_DEPTH = 64

# libyaml parses ~5x faster than the pure-Python parser and caps nesting at 1000
# levels itself; the pure-Python one is the fallback where PyYAML lacks it.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        return self.construct_document(node)


def load_yaml(text: bytes | str) -> Any:
    """Parse one YAML document. Raises yaml.YAMLError for malformed YAML and
    YAMLLimitError for duplicate keys, recursive aliases, or too many or too deep
    nodes once aliases are expanded."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _key_text(node: Node) -> str:
    return str(node.value) if isinstance(node, ScalarNode) else "<complex key>"


def _join(path: str, part: str) -> str:
    if len(path) > 200:  # a path through a deep document stays readable
        return path
    if part.startswith("["):
        return path + part
    return f"{path}.{part}" if path else part


def _children(node: Node) -> list[tuple[str, Node]]:
    if isinstance(node, SequenceNode):
        return [(f"[{i}]", child) for i, child in enumerate(node.value)]
    if isinstance(node, MappingNode):
        out = []
        for key, value in node.value:
            out.append((_key_text(key), key))
            out.append((_key_text(key), value))
        return out
    return []


def _check_graph(root: Node) -> None:
    """Walk the node graph once (each node once, however often it is aliased):
    duplicate keys top-down with their paths, then expanded size and depth bottom-up."""
    paths: dict[int, str] = {id(root): ""}
    order: list[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        path = paths[id(node)]
        if isinstance(node, MappingNode):
            _check_duplicates(node, path)
        for part, child in _children(node):
            if id(child) not in paths:
                paths[id(child)] = _join(path, part)
                stack.append(child)
    # Expanded sizes, children before parents; a node still open when met again
    # is its own ancestor: a recursive alias, which no config needs.
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    open_nodes: set[int] = set()
    work: list[tuple[Node, bool]] = [(root, False)]
    while work:
        node, closing = work.pop()
        key = id(node)
        if closing:
            open_nodes.discard(key)
            kids = [child for _, child in _children(node)]
            size = 1 + sum(sizes[id(c)] for c in kids)
            depth = 1 + max((depths[id(c)] for c in kids), default=0)
            if size > MAX_NODES:
                raise YAMLLimitError(
                    paths[key],
                    f"expands to more than {MAX_NODES} YAML nodes through aliases",
                    node.start_mark.line + 1,
                )
            if depth > MAX_DEPTH:
                raise YAMLLimitError(
                    paths[key],
                    f"nested deeper than {MAX_DEPTH} levels",
                    node.start_mark.line + 1,
                )
            sizes[key], depths[key] = size, depth
            continue
        if key in sizes:
            continue
        open_nodes.add(key)
        work.append((node, True))
        for _, child in _children(node):
            if id(child) in open_nodes:
                raise YAMLLimitError(paths[key], "recursive alias", child.start_mark.line + 1)
            if id(child) not in sizes:
                work.append((child, False))


def _check_duplicates(node: MappingNode, path: str) -> None:
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if not isinstance(key, ScalarNode):
            continue
        ident = (key.tag, str(key.value))
        if ident in seen:
            raise YAMLLimitError(
                _join(path, str(key.value)), "duplicate key", key.start_mark.line + 1
            )
        seen.add(ident)
