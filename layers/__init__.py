"""layers: the built-in layer kinds of hlg (blockwise, input, shuffle, tree reduction; fusion)."""

from hlg import register_layer_kind as _register
from hlg.layers._blockwise import Blockwise as Blockwise
from hlg.layers._blockwise import blockwise as blockwise
from hlg.layers._blockwise import concatenate_axes as concatenate_axes
from hlg.layers._fuse import fuse_blockwise as fuse_blockwise
from hlg.layers._inputs import ArraySlice as ArraySlice
from hlg.layers._inputs import BlockIndex as BlockIndex
from hlg.layers._inputs import BlockProvider as BlockProvider
from hlg.layers._inputs import BlockValues as BlockValues
from hlg.layers._inputs import ChunkShape as ChunkShape
from hlg.layers._inputs import InputLayer as InputLayer
from hlg.layers._inputs import normalize_chunks as normalize_chunks
from hlg.layers._inputs import normalize_numblocks as normalize_numblocks
from hlg.layers._kinds import BLOCKWISE as _BLOCKWISE
from hlg.layers._kinds import INPUT as _INPUT
from hlg.layers._reduction import TREE_REDUCTION as _TREE_REDUCTION
from hlg.layers._reduction import TreeReduction as TreeReduction
from hlg.layers._shuffle import SHUFFLE as _SHUFFLE
from hlg.layers._shuffle import Shuffle as Shuffle
from hlg.layers._shuffle import shuffle_plan as shuffle_plan

# Installed packages are found through the "hlg.layers" entry points; registering here
# too keeps a source checkout without installed metadata working on the client.
_register(_BLOCKWISE)
_register(_INPUT)
_register(_SHUFFLE)
_register(_TREE_REDUCTION)

__all__ = [
    "ArraySlice",
    "BlockIndex",
    "BlockProvider",
    "BlockValues",
    "Blockwise",
    "ChunkShape",
    "InputLayer",
    "Shuffle",
    "TreeReduction",
    "blockwise",
    "concatenate_axes",
    "fuse_blockwise",
    "normalize_chunks",
    "normalize_numblocks",
    "shuffle_plan",
]
