"""The models layer: every network the product runs, built from one registry per family and one settings object.

- :mod:`models.settings`: :class:`ModelSettings` (device, weights folder, segmenter, download);
- :mod:`models.uss`: the USS feature providers, each declaring its checkpoint and what it needs.
"""

from models.settings import ModelSettings

__all__ = ["ModelSettings"]
