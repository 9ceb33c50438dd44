"""Class coverage of a GAN's fixed-noise samples as a health figure (#18 item 3)."""

import math

import torch
from torch import nn

from pyrogen.evaluation import features as F
from pyrogen.evaluation.sample_quality import class_coverage
from pyrogen.training.gan import build_gan_trainer, default_gan_config


def _config():
    config = default_gan_config("mlp", latent_dim=8, hidden=(32,))
    config["train"].update(epochs=1, batch_size=25, log_every=3, num_fixed=64)
    return config


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(100, 1, 28, 28, generator=g), torch.rand(40, 1, 28, 28, generator=g)


class ConstantClass(nn.Module):
    """A classifier that puts every image in class 3."""

    def forward(self, x):
        return nn.functional.one_hot(torch.full((x.shape[0],), 3), 10).float()


def test_without_a_cached_network_coverage_is_skipped_with_one_line(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv("PYROGEN_CACHE", str(tmp_path))
    row = build_gan_trainer(_config(), device="cpu", progress=False, data=_data()).fit()[0]
    assert "classes_covered" not in row and "class-collapse" not in row["flags"]
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if "class coverage" in line]
    assert lines == ["class coverage skipped: no valid cached feature network (pyrogen train features makes it)"]
    assert not list(tmp_path.iterdir())  # nothing was trained or written


def test_cached_network_gives_coverage_of_the_fixed_noise_samples(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("PYROGEN_CACHE", str(tmp_path))
    torch.manual_seed(1)
    F.save_network(F.FashionMNISTClassifier(), *F.default_paths(), info={"recipe": F.FEATURE_RECIPE})
    trainer = build_gan_trainer(_config(), device="cpu", progress=False, data=_data())
    row = trainer.fit()[0]
    classifier, _ = F.load_classifier()
    expected = class_coverage(classifier(trainer.samples()).argmax(-1), 10)
    assert row["class_entropy"] == expected["class_entropy"]
    assert row["classes_covered"] == expected["classes_covered"]
    assert 0 <= row["class_entropy"] <= math.log(10) + 1e-12
    assert ("class-collapse" in row["flags"]) == (row["classes_covered"] < 8)


def test_a_single_predicted_class_is_flagged_as_class_collapse(one_thread):
    trainer = build_gan_trainer(_config(), device="cpu", progress=False, data=_data())
    trainer.classifier = ConstantClass()
    row = trainer.fit()[0]
    assert row["classes_covered"] == 1 and row["class_entropy"] == 0.0
    assert "class-collapse" in row["flags"].split(";")
