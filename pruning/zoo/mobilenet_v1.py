"""MobileNet-V1 (Howard et al., arXiv 2017; width 1.0, 224x224): the network TVM's published mobile-GPU benchmarks
call "mobilenet" (relay.testing.mobilenet), needed to compare against them. ReLU after every batch-norm, as there."""

from __future__ import annotations

from torch import Tensor, nn

# (output channels, stride) of the 13 depthwise-separable blocks, from the paper's Table 1.
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1)]


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int, cifar: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(3, 32, 3, 1 if cifar else 2)]
        cin = 32
        for cout, stride in BLOCKS:
            layers += [_conv_bn_relu(cin, cin, 3, stride, groups=cin), _conv_bn_relu(cin, cout, 1, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def mobilenet_v1(num_classes: int, cifar: bool) -> MobileNetV1:
    return MobileNetV1(num_classes, cifar)
