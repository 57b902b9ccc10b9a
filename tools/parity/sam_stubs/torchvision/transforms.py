"""torchvision.transforms stand-in: every transform raises when built."""

from _sam_stubs import unavailable

Compose = unavailable("torchvision.transforms.Compose")
Resize = unavailable("torchvision.transforms.Resize")
CenterCrop = unavailable("torchvision.transforms.CenterCrop")
Lambda = unavailable("torchvision.transforms.Lambda")
Normalize = unavailable("torchvision.transforms.Normalize")
ToTensor = unavailable("torchvision.transforms.ToTensor")


class InterpolationMode:
    """The names the vision encoder looks up (values as in torchvision)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
