"""Class coverage, conditional accuracy and the linear probe, on constructed sets."""

import math

import pytest
import torch

from pyrogen.errors import DataError
from pyrogen.evaluation.sample_quality import class_coverage, conditional_accuracy, linear_probe_accuracy


def test_even_spread_has_entropy_log_k_and_covers_every_class():
    out = class_coverage(torch.arange(10).repeat(7), num_classes=10)
    assert torch.equal(out["class_distribution"], torch.full((10,), 0.1, dtype=torch.float64))
    assert out["class_entropy"] == pytest.approx(math.log(10), abs=1e-12)
    assert out["classes_covered"] == 10


def test_collapse_onto_one_class_has_entropy_zero():
    out = class_coverage(torch.full((50,), 4), num_classes=10)
    assert out["class_entropy"] == 0.0 and out["classes_covered"] == 1
    assert out["class_distribution"][4] == 1.0 and out["class_distribution"].sum() == 1.0


def test_two_percent_threshold_and_exact_entropy():
    # 100 samples: classes 0 and 1 share 95, class 2 has 3 (3% > 2%), class 3 has exactly 2 (not above 2%)
    pred = torch.tensor([0] * 50 + [1] * 45 + [2] * 3 + [3] * 2)
    out = class_coverage(pred, num_classes=10)
    p = torch.tensor([0.50, 0.45, 0.03, 0.02], dtype=torch.float64)
    assert torch.allclose(out["class_distribution"][:4], p) and out["class_distribution"][4:].sum() == 0
    assert out["class_entropy"] == pytest.approx(float(-(p * p.log()).sum()), abs=1e-12)
    assert out["classes_covered"] == 3


def test_conditional_accuracy_is_the_share_in_the_requested_class():
    pred = torch.tensor([3, 3, 1, 3, 0, 2, 2, 2])
    requested = torch.tensor([3, 3, 3, 3, 2, 2, 2, 2])
    assert conditional_accuracy(pred, requested) == 6 / 8
    assert conditional_accuracy(torch.tensor([3, 3, 1, 3]), 3) == 3 / 4


def test_bad_labels_are_one_line_errors():
    with pytest.raises(DataError) as e:
        class_coverage(torch.tensor([0, 10]), num_classes=10)
    assert str(e.value) == "label 10 is outside the classes 0..9"
    with pytest.raises(DataError, match=r"^pred must be an integer tensor of class labels, got torch.float32$"):
        class_coverage(torch.tensor([0.0, 1.0]))
    with pytest.raises(
        DataError,
        match=r"^pred and requested must hold the same, non-zero number of labels, "
        r"got 3 and 2$",
    ):
        conditional_accuracy(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))


def test_linear_probe_separates_linearly_separable_codes_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(3, (600,), generator=g)
    centres = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    codes = centres[y] + torch.randn(600, 2, generator=g)  # classes 4 sd apart: nearly separable
    acc = linear_probe_accuracy(codes[:400], y[:400], codes[400:], y[400:])
    assert acc > 0.97
    assert acc == linear_probe_accuracy(codes[:400], y[:400], codes[400:], y[400:])  # deterministic
    noise = torch.randn(600, 2, generator=g)  # codes independent of the labels: about chance (1/3)
    assert abs(linear_probe_accuracy(noise[:400], y[:400], noise[400:], y[400:]) - 1 / 3) < 0.1
