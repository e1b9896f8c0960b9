"""The two reserved label values shared by every layer: background and ignore."""

__all__ = ["BACKGROUND", "IGNORE_INDEX"]

BACKGROUND = 0  # class id of the background in every mask
IGNORE_INDEX = 255  # mask value of pixels that carry no label (crowd regions, padding, unsure pixels)
