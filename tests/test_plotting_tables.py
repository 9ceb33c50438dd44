"""Pictures for data that are not images, and which picture kinds do not apply."""

import pytest
import torch
from matplotlib.image import imread

from pyrogen.errors import DataError
from pyrogen.models import VAE
from pyrogen.plotting_tables import (
    IMAGE_PICTURES,
    inapplicable_pictures,
    plot_codes_by_label,
    plot_feature_reconstruction,
    plot_table_pictures,
)


def test_image_pictures_do_not_apply_to_flat_vectors_and_say_why():
    reasons = dict(inapplicable_pictures((7,), latent_dim=2))
    assert sorted(reasons) == sorted(IMAGE_PICTURES)
    assert reasons["reconstructions.png"] == (
        "the examples are vectors of 7 features; feature_reconstruction.png "
        "plots reconstructions against the data, feature by feature"
    )
    assert reasons["prior_samples.png"] == (
        "the examples are vectors of 7 features; a sample is a vector with no picture as an image"
    )
    assert inapplicable_pictures((1, 28, 28), latent_dim=2) == []
    assert inapplicable_pictures((3, 32, 32), latent_dim=10) == [
        (
            "manifold.png",
            "the latent space has 10 dimensions; the manifold is drawn for 2-dimensional latent spaces only",
        )
    ]
    assert dict(inapplicable_pictures((5, 8, 8), 2))["manifold.png"].startswith(
        "the examples are arrays of shape (5, 8, 8) (not 1- or 3-channel images)"
    )
    assert inapplicable_pictures((1, 28, 28), 2, has_labels=False) == [
        ("latent_codes.png (colours)", "the data have no labels: the codes are drawn in one colour")
    ]


@pytest.mark.parametrize("likelihood", ["normal-feature", "negative-binomial-library"])
def test_table_pictures_are_written(tmp_path, likelihood):
    torch.manual_seed(0)
    x = torch.poisson(torch.rand(60, 7) * 4) if "binomial" in likelihood else torch.randn(60, 7)
    vae = VAE(latent_dim=3, image_shape=(7,), hidden=(8,), likelihood=likelihood)
    paths = plot_table_pictures(
        vae, x, lambda name: tmp_path / name, labels=torch.arange(60) % 3, feature_names=list("abcdefg")
    )
    assert [p.rsplit("/", 1)[1] for p in paths] == ["latent_codes.png", "feature_reconstruction.png"]
    for p in paths:
        image = imread(p)
        assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0.01  # a drawn picture
    assert plot_codes_by_label(vae, x, tmp_path / "plain.png") == str(tmp_path / "plain.png")


def test_pictures_refuse_examples_of_another_shape(tmp_path):
    vae = VAE(latent_dim=2, image_shape=(7,), hidden=(8,), likelihood="normal-feature")
    with pytest.raises(DataError, match=r"^x must be examples of shape \(N, 7\), got \(5, 6\)$"):
        plot_feature_reconstruction(vae, torch.zeros(5, 6), tmp_path / "r.png")
    with pytest.raises(DataError, match=r"^labels must have one entry per example \(5\), got 4$"):
        plot_codes_by_label(vae, torch.zeros(5, 7), tmp_path / "c.png", labels=torch.zeros(4))


def test_the_report_names_the_pictures_that_do_not_apply():
    from pyrogen.report import _inapplicable

    note = _inapplicable({"image_shape": [7], "latent_dim": 2})
    assert note.startswith(
        "<p class='note'>Pictures that do not apply to this run: <code>reconstructions.png</code>: "
        "the examples are vectors of 7 features; feature_reconstruction.png plots"
    )
    assert note.count("<code>") == len(IMAGE_PICTURES)
    assert _inapplicable({"image_shape": [1, 28, 28], "latent_dim": 2}) == ""
    # a two-layer VAE's configuration (as TwoLayerVAE.config gives it): the lower latent layer is the code drawn
    two_layer = {"model": "two-layer", "latent_dims": [8, 4], "image_shape": [1, 28, 28]}
    assert "the latent space has 8 dimensions" in _inapplicable(two_layer)
