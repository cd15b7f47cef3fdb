"""The networks jaxretina explains, as Flax linen modules (channels-last)."""

from jaxretina.models.driu import DRIU, HED_CROP_OFFSETS

__all__ = ["DRIU", "HED_CROP_OFFSETS"]
