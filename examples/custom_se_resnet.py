"""Compose your own convnet from cnnkit's blocks: a small SE-ResNet, registered and trained on CPU.

An SE-ResNet unit is a residual unit whose residual branch is recalibrated by a
squeeze-and-excitation block before the shortcut is added (Hu et al., 2018). Registering the
builder makes the model available by name everywhere cnnkit takes a model name. The training
loop is plain PyTorch on a synthetic three-class dataset, so the script runs in seconds.

Run: python examples/custom_se_resnet.py
"""

from __future__ import annotations

import torch
from torch import nn

from cnnkit.models import Classifier, Preprocessing, ResidualUnit, SEBlock, create_model, register_model
from cnnkit.models.classifier import linear_head


class SEResidualUnit(nn.Module):
    """ResidualUnit with an SEBlock on its residual branch: ``relu(se(main(x)) + shortcut(x))``."""

    def __init__(self, in_channels: int, filters: int, stride: int = 1, ratio: int = 8) -> None:
        super().__init__()
        self.unit = ResidualUnit(in_channels, filters, stride)
        self.se = SEBlock(self.unit.out_channels, ratio)
        self.out_channels = self.unit.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.se(self.unit.main(x)) + self.unit.shortcut(x))


@register_model(
    "tiny_se_resnet",
    preprocessing=Preprocessing(input_size=32),
    description="Example: 3x3 stem, three SE residual units of 16-32-64 maps, global average pooling",
    family="senet",
)
def tiny_se_resnet(
    num_classes: int, pretrained: bool = False, input_size: int = 32, dropout: float = 0.0
) -> Classifier:
    """Stem, then one unit per width; each later unit halves the size and doubles the maps."""
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
    in_channels = 16
    for filters in (16, 32, 64):
        unit = SEResidualUnit(in_channels, filters, stride=1 if filters == in_channels else 2)
        layers.append(unit)
        in_channels = unit.out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), linear_head(in_channels, num_classes, dropout), in_channels)


def synthetic_shapes(count: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes on noise: a bright square (0), a bright disc (1), horizontal stripes (2), anywhere."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 3
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.rand(count, 3, size, size, generator=generator) * 0.3
    radius = size // 5
    for index, label in enumerate(labels.tolist()):
        cy, cx = torch.randint(size // 4, 3 * size // 4, (2,), generator=generator).tolist()
        if label == 0:
            mask = ((rows - cy).abs() <= radius) & ((cols - cx).abs() <= radius)
        elif label == 1:
            mask = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
        else:
            mask = (rows // 4) % 2 == 0
        images[index, :, mask] = 0.9
    return images, labels


def main() -> None:
    torch.manual_seed(0)
    model = create_model("tiny_se_resnet", num_classes=3)
    print(f"{model.model_name}: {sum(p.numel() for p in model.parameters()):,} parameters")
    images, labels = synthetic_shapes(384)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, 7):
        model.train()
        order = torch.randperm(len(images))
        total = 0.0
        for batch in order.split(32):
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch}: loss {total / len(images):.3f}")
    test_images, test_labels = synthetic_shapes(96, seed=1)
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_images).argmax(dim=1) == test_labels).float().mean().item()
    print(f"accuracy on fresh images: {accuracy:.0%}")


if __name__ == "__main__":
    main()
