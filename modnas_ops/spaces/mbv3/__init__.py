"""The MobileNetV3-elastic (Once-for-All) space: :mod:`.space` (decisions, strings, HELP encoding, anchors) and
:mod:`.supernet` (elastic supernet and static subnets)."""

from .space import MBV3_ANCHOR_INDICES, MBV3Space

__all__ = ["MBV3_ANCHOR_INDICES", "MBV3Space"]
