"""layers: the built-in layer kinds of hlg (blockwise, inputs, shuffle, tree reduction)."""

from layers._blockwise import Blockwise as Blockwise
from layers._blockwise import blockwise as blockwise
from layers._blockwise import concatenate_axes as concatenate_axes
from layers._fuse import fuse_blockwise as fuse_blockwise
from layers._inputs import ArraySlice as ArraySlice
from layers._inputs import BlockIndex as BlockIndex
from layers._inputs import BlockProvider as BlockProvider
from layers._inputs import BlockValues as BlockValues
from layers._inputs import ChunkShape as ChunkShape
from layers._inputs import InputLayer as InputLayer
from layers._inputs import normalize_chunks as normalize_chunks

__all__ = [
    "ArraySlice",
    "BlockIndex",
    "BlockProvider",
    "BlockValues",
    "Blockwise",
    "ChunkShape",
    "InputLayer",
    "blockwise",
    "concatenate_axes",
    "fuse_blockwise",
    "normalize_chunks",
]
