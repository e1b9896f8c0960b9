"""The models layer: every network the product runs, built from one registry and one settings object.

- :mod:`models.registry`: every model by name (segmenters, USS providers, backbones) with its checkpoint and
  capabilities;
- :mod:`models.settings`: :class:`ModelSettings` (device, weights folder, segmenter, download), built by the
  CLI or the GUI and handed to every job;
- :mod:`models.weights`: the official checkpoints, their SHA-256 checks, the download folder, safe loading;
- :mod:`models.segmenters`: promptable segmenters (SAM, SAM 2.1, HQ-SAM / Light HQ-SAM, Light SAM, GrabCut), each owning
  its prompt geometry (:mod:`models.segmenters.frame`); ``segmenter_choices(settings)`` lists them for a menu;
- :mod:`models.embedding_cache`: the on-disk cache of embeddings and features, keyed by image hash and model id;
- :mod:`models.uss`: USS feature providers (colour, the segmenter's embedding, DINO in :mod:`models.dino`);
- :mod:`models.backbone`, :mod:`models.classifier`, :mod:`models.deeplab`: ResNet backbones, the tag
  classifier with its CAMs and training, DeepLabv3+;
- :mod:`models.inference`, :mod:`models.optim`, :mod:`models.transforms`: the multi-scale + flip inference
  loop, the optimiser and poly schedule, and the augmentation every network here shares.
"""

from models.settings import ModelSettings

__all__ = ["ModelSettings"]
