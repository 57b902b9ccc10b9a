"""torchvision stand-in: the vision encoder's image transforms, unused without video."""

from . import transforms

__all__ = ["transforms"]
