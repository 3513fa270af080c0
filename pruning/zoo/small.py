"""A small VGG-style CNN for 32x32 RGB input: fast enough to fine-tune on a laptop CPU.

Used by the tests and the demo with the scikit-learn digits data; its convs are large enough
(64-128 channels) for block pruning to have blocks to prune.
"""

from __future__ import annotations

from torch import Tensor, nn


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(3, 32), nn.MaxPool2d(2),
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
            *block(64, 128), *block(128, 128), nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(128, 128)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu(self.fc1(self.pool(self.features(x)).flatten(1))))


def small_cnn(num_classes: int) -> SmallCNN:
    return SmallCNN(num_classes)
