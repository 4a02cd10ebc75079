"""A partitioned table on pandas: CSV input, map, groupby-sum, global sort, len and sum.

Every operation is one symbolic layer: reading is an ``InputLayer`` over file paths,
``map_partitions`` a blockwise layer, ``groupby_sum`` a hash-partitioning ``Shuffle``
followed by a per-partition aggregate, ``sort_values`` a range-partitioning ``Shuffle``
whose boundaries come from a sample reduction, and ``len`` / ``sum`` are
``TreeReduction``s. Needs pandas (``pip install 'hlg[table]'``).

Run it: ``python examples/table.py``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import hlg
from hlg import HighLevelGraph, layers


class HashSplit:
    """Route rows by a hash of column ``by`` into ``npartitions`` destinations."""

    def __init__(self, by: str, npartitions: int) -> None:
        self.by = by
        self.npartitions = npartitions

    def __call__(self, df: pd.DataFrame, k: int, stage: int) -> list[pd.DataFrame]:
        hashed = pd.util.hash_pandas_object(df[self.by], index=False).to_numpy()
        return _pieces(df, hashed % np.uint64(self.npartitions), k, stage)


class RangeSplit:
    """Route rows by where column ``column`` falls among sorted ``boundaries``."""

    def __init__(self, column: str, boundaries: Sequence[Any]) -> None:
        self.column = column
        self.boundaries = np.asarray(boundaries)

    def __call__(self, df: pd.DataFrame, k: int, stage: int) -> list[pd.DataFrame]:
        destination = np.searchsorted(self.boundaries, df[self.column].to_numpy(), side="right")
        return _pieces(df, destination, k, stage)


def _pieces(df: pd.DataFrame, destination: Any, k: int, stage: int) -> list[pd.DataFrame]:
    """Piece ``j`` holds the rows whose destination has digit ``stage`` (base k) ``j``."""
    digit = np.asarray(destination, dtype=np.int64) // k**stage % k
    return [df[digit == j] for j in range(k)]


def concat(pieces: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(pieces)


class Sample:
    """Up to ``size`` evenly spaced sorted values of one column of a partition."""

    def __init__(self, column: str, size: int = 32) -> None:
        self.column = column
        self.size = size

    def __call__(self, df: pd.DataFrame) -> np.ndarray:
        values = np.sort(df[self.column].to_numpy())
        if len(values) <= self.size:
            return values
        return values[np.linspace(0, len(values) - 1, self.size).astype(np.int64)]


def join_samples(samples: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(samples)


class Boundaries:
    """``npartitions - 1`` quantiles of the joined samples: the range split points."""

    def __init__(self, npartitions: int) -> None:
        self.npartitions = npartitions

    def __call__(self, samples: list[np.ndarray]) -> np.ndarray:
        values = np.concatenate(samples)
        if len(values) == 0 or self.npartitions == 1:
            return values[:0]
        points = np.linspace(0, 1, self.npartitions + 1)[1:-1]
        return np.quantile(values, points, method="lower")


class ColumnSum:
    def __init__(self, column: str) -> None:
        self.column = column

    def __call__(self, df: pd.DataFrame) -> Any:
        return df[self.column].sum()


def total(values: list[Any]) -> Any:
    return sum(values)


class GroupSum:
    def __init__(self, by: str) -> None:
        self.by = by

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.groupby(self.by).sum()


class SortPart:
    def __init__(self, column: str) -> None:
        self.column = column

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        return df.sort_values(self.column, kind="stable")


class Table:
    """A table of ``npartitions`` pandas DataFrames: keys ``(name, i)`` of ``graph``."""

    def __init__(self, graph: HighLevelGraph, name: str, npartitions: int) -> None:
        self.graph = graph
        self.name = name
        self.npartitions = npartitions

    def __hlg_graph__(self) -> HighLevelGraph:
        return self.graph

    def __hlg_layers__(self) -> list[str]:
        return [self.name]

    @classmethod
    def read_csv(cls, paths: Sequence[str | Path], **kwargs: Any) -> Table:
        """One partition per CSV file."""
        paths = [str(p) for p in paths]
        name = "read-csv-" + hlg.tokenize(paths, kwargs)
        layer = layers.InputLayer(name, pd.read_csv, paths, **kwargs)
        return cls(HighLevelGraph({name: layer}, {name: ()}), name, len(paths))

    def _then(self, layer: hlg.Layer, npartitions: int) -> Table:
        graph = HighLevelGraph.from_collections(layer.name, layer, [self])
        return Table(graph, layer.name, npartitions)

    def map_partitions(self, func: Callable[..., pd.DataFrame], *args: Any) -> Table:
        """``func(partition, *args)`` on every partition: one blockwise layer."""
        label = getattr(func, "__name__", type(func).__name__.lower())
        name = f"{label}-" + hlg.tokenize(self.name, _spec(func), args)
        pairs = [arg for a in args for arg in (a, None)]
        layer = layers.blockwise(
            func, name, "i", self.name, "i", *pairs, numblocks={self.name: (self.npartitions,)}
        )
        return self._then(layer, self.npartitions)

    def shuffle(self, split: Any, npartitions: int, max_branch: int = 32) -> Table:
        """Repartition with ``split`` into ``npartitions`` partitions (a task shuffle)."""
        name = "shuffle-" + hlg.tokenize(self.name, _spec(split), npartitions, max_branch)
        layer = layers.Shuffle(
            name, self.name, self.npartitions, npartitions, split, concat, max_branch
        )
        return self._then(layer, npartitions)

    def groupby_sum(self, by: str, npartitions: int | None = None, max_branch: int = 32) -> Table:
        """Sum the other columns per value of ``by``: hash-shuffle, then aggregate locally."""
        n = npartitions or self.npartitions
        return self.shuffle(HashSplit(by, n), n, max_branch).map_partitions(GroupSum(by))

    def sort_values(
        self, column: str, npartitions: int | None = None, max_branch: int = 32
    ) -> Table:
        """A global, stable sort by ``column``: sample, range-shuffle, sort each partition."""
        n = npartitions or self.npartitions
        boundaries = self.reduce(Sample(column), join_samples, Boundaries(n), "boundaries")
        split = RangeSplit(column, boundaries.compute())
        return self.shuffle(split, n, max_branch).map_partitions(SortPart(column))

    def reduce(self, chunk: Any, combine: Any, aggregate: Any, what: str) -> Scalar:
        """A tree reduction of the partitions to one value ``(name, 0)``."""
        name = f"{what}-" + hlg.tokenize(self.name, _spec(chunk), _spec(aggregate))
        layer = layers.TreeReduction(name, self.name, self.npartitions, chunk, combine, aggregate)
        return Scalar(HighLevelGraph.from_collections(name, layer, [self]), name)

    def __len__(self) -> int:
        return int(self.reduce(len, total, total, "len").compute())

    def sum(self, column: str) -> Scalar:
        """The sum of one column."""
        return self.reduce(ColumnSum(column), total, total, f"sum-{column}")

    def partitions(self) -> list[pd.DataFrame]:
        """Compute every partition."""
        return list(hlg.get(self.graph, [(self.name, i) for i in range(self.npartitions)]))

    def compute(self) -> pd.DataFrame:
        """Compute the whole table."""
        return pd.concat(self.partitions())


def _spec(func: Any) -> Any:
    """What names a function in a layer name: its class and settings, or itself."""
    if isinstance(func, (HashSplit, RangeSplit, Sample, Boundaries, ColumnSum, GroupSum, SortPart)):
        return (type(func).__name__, func.__dict__)
    return func


class Scalar:
    """One value, key ``(name, 0)``."""

    def __init__(self, graph: HighLevelGraph, name: str) -> None:
        self.graph = graph
        self.name = name

    def compute(self) -> Any:
        return hlg.get(self.graph, (self.name, 0))


def write_parts(folder: Path, frames: Sequence[pd.DataFrame]) -> list[Path]:
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f"part-{i:04d}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


DTYPES = {"key": "int64", "value": "int64", "weight": "float64"}


def double_value(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(value=df["value"] * 2)


def main() -> int:
    rng = np.random.default_rng(7)
    frames = [
        pd.DataFrame(
            {
                "key": rng.integers(0, 40, size=n),
                "value": rng.integers(-100, 100, size=n),
                "weight": rng.random(size=n),
            }
        )
        for n in rng.integers(0, 60, size=24)
    ]
    whole = pd.concat(frames, ignore_index=True)
    with tempfile.TemporaryDirectory() as folder:
        table = Table.read_csv(write_parts(Path(folder), frames), dtype=DTYPES)
        doubled = table.map_partitions(double_value)
        grouped = doubled.groupby_sum("key", npartitions=7, max_branch=4)
        print(f"{table.npartitions} CSV partitions, {len(table)} rows")
        print(grouped.graph.describe())
        got = grouped.compute().sort_index()
        want = double_value(whole).groupby("key").sum()
        pd.testing.assert_frame_equal(got, want)
        print(f"groupby('key').sum() over 7 partitions matches pandas ({len(got)} groups)")

        ordered = table.sort_values("weight", npartitions=5, max_branch=2)
        result = ordered.compute().reset_index(drop=True)
        expected = whole.sort_values("weight", kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(result, expected)
        sizes = [len(p) for p in ordered.partitions()]
        print(f"sort_values('weight') matches pandas; partition sizes {sizes}")

        assert len(table) == len(whole)
        value_sum = table.sum("value").compute()
        assert value_sum == whole["value"].sum()
        print(f"len = {len(table)}, sum(value) = {value_sum}, both equal to pandas")

        data = hlg.pack(grouped.graph)
        packed = hlg.unpack(data)
        print(f"groupby graph packed into {len(data):,} bytes: {len(packed)} tasks")
        assert hlg.get(packed, (grouped.name, 3)).equals(hlg.get(grouped.graph, (grouped.name, 3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
