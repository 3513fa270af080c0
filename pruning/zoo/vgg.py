"""VGG-16 (Simonyan & Zisserman 2015, configuration D).

ImageNet form: the published network (13 convs, 7x7x512 -> 4096 -> 4096 -> classes, no batch-norm).
CIFAR form: the variant used throughout the pruning literature (PCONV, PatDNN): the same 13 convs
with batch-norm and a single 512 -> 10 classifier.
"""

from __future__ import annotations

from torch import Tensor, nn

CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, num_classes: int, cifar: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in CFG_D:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(cin, int(v), 3, padding=1, bias=not cifar))
            if cifar:
                layers.append(nn.BatchNorm2d(int(v)))
            layers.append(nn.ReLU(inplace=True))
            cin = int(v)
        self.features = nn.Sequential(*layers)
        if cifar:
            self.pool: nn.Module = nn.Identity()
            self.classifier = nn.Sequential(nn.Linear(512, num_classes))
        else:
            self.pool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                nn.Linear(4096, num_classes),
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def vgg16(num_classes: int, cifar: bool) -> VGG:
    return VGG(num_classes, cifar)
