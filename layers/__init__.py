"""layers: the built-in layer kinds of hlg (blockwise, inputs, shuffle, tree reduction)."""

__all__: list[str] = []
