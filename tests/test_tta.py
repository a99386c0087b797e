"""Test-time augmentation views: each moves the pixels as it says, and boxes come back to the image."""

from __future__ import annotations

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.tta import averaged_views, check_tta, views

SIZE = 32


def _dot_image(row: int, column: int) -> torch.Tensor:
    image = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8)
    image[..., row, column] = 255
    return image


def _dot_box(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stand-in localizer: the box around each image's bright pixel, and a class that depends on its side."""
    flat = images[:, 0].flatten(1).argmax(1)
    rows, columns = (flat // SIZE).float(), (flat % SIZE).float()
    boxes = torch.stack([columns, rows, columns + 1, rows + 1], dim=1) / SIZE
    left = (columns < SIZE / 2).float()
    return torch.stack([left, 1 - left], dim=1), boxes


def test_shift_flip_has_six_views_and_moves_pixels_one_step_per_32_px() -> None:
    assert len(views("none", SIZE)) == 1 and len(views("flip", SIZE)) == 2 and len(views("shift_flip", SIZE)) == 6
    assert {view.shift for view in views("shift_flip", 224)} == {0, -7, 7}
    image = _dot_image(10, 20)
    for view in views("shift_flip", SIZE):
        row, column = divmod(int(view.apply(image)[0, 0].flatten().argmax()), SIZE)
        expected_column = 20 + view.shift
        assert row == 10 + view.shift
        assert column == (SIZE - 1 - expected_column if view.mirror else expected_column)


def test_shifts_reflect_at_the_edge_instead_of_wrapping_around() -> None:
    image = torch.arange(SIZE, dtype=torch.float32).expand(1, 1, SIZE, SIZE)
    (shifted,) = [view for view in views("shift_flip", SIZE) if view.shift == 1 and not view.mirror]
    assert shifted.apply(image)[0, 0, 0, :3].tolist() == [1.0, 0.0, 1.0]  # column -1 mirrors column 1


def test_every_views_box_maps_back_to_the_box_on_the_image() -> None:
    image = _dot_image(5, 9)
    _, plain_box = _dot_box(image)
    for tta in ("flip", "shift_flip"):
        probabilities, box = averaged_views(_dot_box, image, tta)
        assert torch.allclose(box, plain_box, atol=1e-6)
        assert torch.allclose(probabilities, torch.tensor([[0.5, 0.5]]))  # the mirrors see the dot on the other side


def test_an_unknown_tta_is_one_line_naming_the_choices() -> None:
    with pytest.raises(CnnkitError, match="--tta must be one of none, flip, shift_flip, not 'rotate'"):
        check_tta("rotate")
