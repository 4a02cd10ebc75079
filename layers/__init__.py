"""layers: the built-in layer kinds of hlg (blockwise and input layers, blockwise fusion)."""

from hlg import register_layer_kind as _register
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
from layers._inputs import normalize_numblocks as normalize_numblocks
from layers._kinds import BLOCKWISE as _BLOCKWISE
from layers._kinds import INPUT as _INPUT

# Installed packages are found through the "hlg.layers" entry points; registering here
# too keeps a source checkout without installed metadata working on the client.
_register(_BLOCKWISE)
_register(_INPUT)

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
    "normalize_numblocks",
]
