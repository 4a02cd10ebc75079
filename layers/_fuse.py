"""Blockwise fusion: compose the templates of chained Blockwise layers into one layer.

The pass reads layer descriptions only — index strings, block counts, templates — so
its cost does not depend on the number of blocks, and it never builds a task. Each
refusal is reported with its reason through ``hlg.report_refusal``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hlg import HighLevelGraph, Key, Layer, Placeholder, report_refusal
from hlg.layers._blockwise import Blockwise

__all__ = ["fuse_blockwise"]


def fuse_blockwise(graph: HighLevelGraph, keys: Sequence[Key]) -> HighLevelGraph:
    """Fuse chains (and trees) of Blockwise layers by composing their templates.

        A producer ``P`` is fused into its consumer ``C`` when all of these hold (each
        refusal is logged with its reason): ``C`` is ``P``'s only dependent layer among
        the layers ``keys`` need (a layer they do not need is dropped with ``P``), none of
        ``keys`` is in ``P``, ``C`` reads ``P`` through exactly one argument and without
        contraction, ``P`` itself contracts nothing and adds no axes, ``P`` (if culled)
        keeps every block ``C`` reads, the block counts agree, and both layers have equal
        annotations. The fused layer keeps ``C``'s name, keys and annotations and holds one
        template.

        >>> from operator import getitem, mul
        >>> import hlg
    >>> from hlg import layers
        >>> x = layers.blockwise(getitem, "x", "i", layers.BlockIndex((4,)), "i", 0, None)
        >>> y = layers.blockwise(mul, "y", "i", "x", "i", 10, None, numblocks={"x": (4,)})
        >>> g = hlg.HighLevelGraph({"x": x, "y": y}, {"y": ["x"]})
        >>> fused = fuse_blockwise(g, [("y", 3)])
        >>> list(fused.layers), hlg.get(fused, ("y", 3))
        (['y'], 30)
        >>> fused.layers["y"].template
        ArgSpec(mul, ArgSpec(getitem, Placeholder(0), 0), 10)
    """
    try:  # by block sets where layers allow it: no lookup per key
        blocks, listed = graph.requested_blocks(keys)
        requested = {*blocks, *listed}
    except KeyError:  # some keys are not in the graph: they are ignored
        requested = {graph.layer_of(k).name for k in keys if k in graph}
    layers: dict[str, Layer] = dict(graph.layers)
    deps = {name: set(names) for name, names in graph.dependencies.items()}
    dependents: dict[str, set[str]] = {name: set() for name in layers}
    for name, names in deps.items():
        for dep in names:
            dependents[dep].add(name)
    owners: dict[str, list[str]] = {}
    for name, layer in layers.items():
        for prefix in layer.prefixes:
            owners.setdefault(prefix, []).append(name)
    # Layers the requested keys need: a layer outside them (left over in the graph) does
    # not keep a producer from fusing; it is dropped when the producer is fused away.
    needed = set(requested)
    stack = list(requested)
    while stack:
        for dep in deps[stack.pop()]:
            if dep not in needed:
                needed.add(dep)
                stack.append(dep)
    if not needed:
        needed = set(layers)
    refused: dict[tuple[str, str], str] = {}
    for name in reversed(graph.topological_layers()):
        if name not in layers or name not in needed or not isinstance(layers[name], Blockwise):
            continue
        while True:
            consumer = layers[name]
            assert isinstance(consumer, Blockwise)
            for target in _inputs(consumer):
                producer_names = owners.get(target, [])
                if len(producer_names) != 1 or producer_names[0] not in layers:
                    continue
                producer_name = producer_names[0]
                producer = layers[producer_name]
                if not isinstance(producer, Blockwise):
                    continue
                readers = dependents[producer_name] & needed
                reason = _refusal(consumer, producer, readers, requested)
                if reason:
                    refused[(producer_name, name)] = reason  # the last word on this pair
                    continue
                for unused in sorted(dependents[producer_name] - needed):
                    _drop(unused, layers, deps, dependents)
                layers[name] = _compose(consumer, producer)
                del layers[producer_name]
                deps[name] = (deps[name] - {producer_name}) | deps.pop(producer_name)
                for dep in deps[name]:
                    dependents[dep].discard(producer_name)
                    dependents[dep].add(name)
                del dependents[producer_name]
                break
            else:
                break
    for (producer_name, name), reason in refused.items():
        if producer_name in layers and name in layers:
            report_refusal(f"fuse_blockwise: not fusing {producer_name!r} into {name!r}: {reason}")
    order = [n for n in graph.layers if n in layers]
    return HighLevelGraph({n: layers[n] for n in order}, {n: deps[n] for n in order})


def _drop(
    name: str,
    layers: dict[str, Layer],
    deps: dict[str, set[str]],
    dependents: dict[str, set[str]],
) -> None:
    """Remove a layer no requested key needs, and the layers reading it (neither needed)."""
    if name not in layers:
        return
    for reader in sorted(dependents[name]):
        _drop(reader, layers, deps, dependents)
    for dep in deps.pop(name):
        dependents[dep].discard(name)
    del dependents[name]
    del layers[name]


def _inputs(layer: Blockwise) -> list[str]:
    return list(dict.fromkeys(t for t, _ in layer.indices if isinstance(t, str)))


def _refusal(
    consumer: Blockwise, producer: Blockwise, readers: set[str], requested: set[str]
) -> str | None:
    """Why ``producer`` cannot be fused into ``consumer``, or None when it can."""
    if readers != {consumer.name}:
        return f"it has several dependents ({', '.join(sorted(readers))})"
    if producer.name in requested:
        return "its keys are requested outputs"
    slots = [i for i, (t, _) in enumerate(consumer.indices) if t == producer.output]
    if len(slots) != 1:
        patterns = {"".join(consumer.indices[i][1]) for i in slots}
        how = "with different index patterns" if len(patterns) > 1 else "twice"
        return f"the consumer reads it {how} ({', '.join(sorted(patterns))})"
    if any(k[0] == producer.output for k in consumer.template.constant_dependencies()):
        return "the consumer also reads it through a constant reference"
    if consumer.contracted_axes(slots[0]):
        return "the consumer contracts over it (a reduction boundary)"
    if any(producer.contracted_axes(i) for i in range(len(producer.indices))):
        return "it contracts over its inputs (a reduction boundary)"
    if producer.new_axes:
        return "it adds new axes"
    if producer.output_blocks is not None and not consumer.argument_blocks(
        slots[0], consumer.block_set()
    ).issubset(producer.output_blocks):  # symbolic: boxes map to boxes
        return "it is culled to fewer blocks than the consumer reads"
    if consumer.numblocks.get(producer.output) != producer.shape:
        return (
            f"block counts differ (the consumer expects {consumer.numblocks.get(producer.output)}"
            f", the producer has {producer.shape})"
        )
    if consumer.annotations != producer.annotations:
        return f"annotations differ ({dict(producer.annotations)} vs {dict(consumer.annotations)})"
    return None


def _compose(consumer: Blockwise, producer: Blockwise) -> Blockwise:
    """One Blockwise computing ``consumer`` with ``producer``'s template inlined."""
    (slot,) = [i for i, (t, _) in enumerate(consumer.indices) if t == producer.output]
    letters = dict(zip(producer.output_indices, consumer.indices[slot][1], strict=True))
    kept = [pair for i, pair in enumerate(consumer.indices) if i != slot]
    first_new = len(kept)
    inner = producer.template.renumber(
        {j: Placeholder(first_new + j) for j in range(len(producer.indices))}
    )
    mapping: dict[int, Any] = {slot: inner}
    for i in range(len(consumer.indices)):
        if i != slot:
            mapping[i] = Placeholder(i if i < slot else i - 1)
    indices = kept + [(target, tuple(letters[c] for c in ind)) for target, ind in producer.indices]
    numblocks = {k: v for k, v in consumer.numblocks.items() if k != producer.output}
    numblocks.update(producer.numblocks)
    return consumer.replace(
        template=consumer.template.renumber(mapping), indices=indices, numblocks=numblocks
    )
