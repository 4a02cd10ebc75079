"""hlg: high-level task graphs with explicit tasks, symbolic layers and packed graphs."""

from hlg import _shadow as _shadow  # first: names a local file shadowing msgspec/cloudpickle
from hlg._annotations import Annotations as Annotations
from hlg._annotations import annotate as annotate
from hlg._argspec import ArgSpec as ArgSpec
from hlg._argspec import Placeholder as Placeholder
from hlg._blobs import BlobRef as BlobRef
from hlg._blobs import Blobs as Blobs
from hlg._blobs import PackContext as PackContext
from hlg._blocks import BlockSet as BlockSet
from hlg._bridge import compute_on as compute_on
from hlg._bridge import dask_collection as dask_collection
from hlg._bridge import from_dask as from_dask
from hlg._bridge import to_dask as to_dask
from hlg._callbacks import Callback as Callback
from hlg._callbacks import ProgressBar as ProgressBar
from hlg._compute import compute as compute
from hlg._get import CycleError as CycleError
from hlg._get import MissingKeyError as MissingKeyError
from hlg._get import get as get
from hlg._get import toposort as toposort
from hlg._graph import HighLevelGraph as HighLevelGraph
from hlg._graph import HLGCollection as HLGCollection
from hlg._graph import LayerCollisionError as LayerCollisionError
from hlg._keys import Key as Key
from hlg._keys import iskey as iskey
from hlg._keys import key_prefix as key_prefix
from hlg._keys import validate_key as validate_key
from hlg._layer import CulledLayer as CulledLayer
from hlg._layer import Layer as Layer
from hlg._layer import MaterializedLayer as MaterializedLayer
from hlg._legacy import convert_legacy_graph as convert_legacy_graph
from hlg._legacy import convert_legacy_task as convert_legacy_task
from hlg._optimize import Pass as Pass
from hlg._optimize import cull as cull
from hlg._optimize import fuse_linear as fuse_linear
from hlg._optimize import optimize as optimize
from hlg._optimize import report_refusal as report_refusal
from hlg._order import order as order
from hlg._pack import pack as pack
from hlg._pack import unpack as unpack
from hlg._packed import PackedGraph as PackedGraph
from hlg._packed import PackedTask as PackedTask
from hlg._processes import WorkerDiedError as WorkerDiedError
from hlg._registry import KindWarning as KindWarning
from hlg._registry import LayerKind as LayerKind
from hlg._registry import UnpackContext as UnpackContext
from hlg._registry import layer_kind as layer_kind
from hlg._registry import register_layer_kind as register_layer_kind
from hlg._task import Alias as Alias
from hlg._task import DataNode as DataNode
from hlg._task import GraphNode as GraphNode
from hlg._task import MissingDependencyError as MissingDependencyError
from hlg._task import Task as Task
from hlg._task import TaskRef as TaskRef
from hlg._tokenize import normalize_token as normalize_token
from hlg._tokenize import tokenize as tokenize
from hlg._wire import Limits as Limits
from hlg._wire import PackError as PackError

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``hlg.layers`` after a plain ``import hlg``: the built-in kinds, imported on first use.

    The core never imports them itself (it finds kinds through the registry); this only
    spares users an ``import hlg.layers``.

    >>> import hlg
    >>> hlg.layers.blockwise.__name__
    'blockwise'
    """
    if name == "layers":
        import importlib

        return importlib.import_module("hlg.layers")
    raise AttributeError(f"module 'hlg' has no attribute {name!r}")


__all__ = [
    "Alias",
    "Annotations",
    "ArgSpec",
    "BlobRef",
    "Blobs",
    "BlockSet",
    "Callback",
    "CulledLayer",
    "CycleError",
    "DataNode",
    "GraphNode",
    "HLGCollection",
    "HighLevelGraph",
    "Key",
    "KindWarning",
    "Layer",
    "LayerCollisionError",
    "LayerKind",
    "Limits",
    "MaterializedLayer",
    "MissingDependencyError",
    "MissingKeyError",
    "PackContext",
    "PackError",
    "PackedGraph",
    "PackedTask",
    "Pass",
    "Placeholder",
    "ProgressBar",
    "Task",
    "TaskRef",
    "UnpackContext",
    "WorkerDiedError",
    "__version__",
    "annotate",
    "compute",
    "compute_on",
    "convert_legacy_graph",
    "convert_legacy_task",
    "cull",
    "dask_collection",
    "from_dask",
    "fuse_linear",
    "get",
    "iskey",
    "key_prefix",
    "layer_kind",
    "normalize_token",
    "optimize",
    "order",
    "pack",
    "register_layer_kind",
    "report_refusal",
    "to_dask",
    "tokenize",
    "toposort",
    "unpack",
    "validate_key",
]
