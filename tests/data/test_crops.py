from __future__ import annotations

import pytest

from maskops.boxes import expand_box
from maskops.data.crops import box_from_str, box_to_str, safe_stem


def test_expand_box_adds_margin_per_side() -> None:
    assert expand_box((10, 20, 30, 60), 0.1, 100, 100) == (8, 16, 32, 64)
    assert expand_box((10, 20, 30, 60), 0.0, 100, 100) == (10, 20, 30, 60)


def test_expand_box_clips_to_image() -> None:
    assert expand_box((0, 0, 50, 40), 0.5, 60, 45) == (0, 0, 60, 45)


def test_box_string_round_trip() -> None:
    assert box_to_str((1, 2.0, 3.25, 4.04)) == "1,2,3.2,4"
    assert box_from_str("1,2,3.5,4") == (1.0, 2.0, 3.5, 4.0)
    assert box_from_str("") is None
    with pytest.raises(ValueError, match="x1,y1,x2,y2"):
        box_from_str("1,2,3")


def test_safe_stem() -> None:
    assert safe_stem("0_0_≈˙◊¢ 2020-02-24 225427") == "0_0__2020-02-24_225427"
    assert safe_stem("...") == "img"
