"""Every plot function writes a non-blank PNG of the expected pixel size from a tiny trained model."""

import os

import numpy as np
import pyro
import pytest
import torch
from PIL import Image

from pyrogen import plotting
from pyrogen.data import FASHION_MNIST_CLASSES
from pyrogen.errors import DataError
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.models import VAE, TwoLayerVAE
from tests.conftest import requires_fashion_mnist

pytestmark = requires_fashion_mnist
CELL = plotting.GRID_CELL


@pytest.fixture(scope="module")
def trained(fashion_mnist_small):
    """A 2-D and a 5-D VAE (one hidden layer of 32) after 30 Adam steps on 1,500 binarized images."""
    train, test = fashion_mnist_small
    torch.manual_seed(0)
    x = torch.bernoulli(train.images[:1500])
    models = {}
    for latent_dim in (2, 5):
        vae = VAE(latent_dim=latent_dim, hidden=(32,))
        svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=3e-3), ReparamTrace_ELBO())
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny matrices: one thread is faster, and far faster on a busy machine
        try:
            with pyro.validation_enabled(False):  # the data are binary by construction
                for step in range(30):
                    svi.step(x[(step % 15) * 100 : (step % 15 + 1) * 100])
        finally:
            torch.set_num_threads(threads)
        models[latent_dim] = vae.eval()
    return models, test.images[:300].round(), test.labels[:300]


def _check_png(path, size_in, dpi=100):
    assert os.path.getsize(path) > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == tuple(round(s * dpi) for s in size_in)
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert pixels.std() > 10, "the picture is blank"


def _grid(rows, cols, left=0.0):
    return (cols * CELL + left + 0.2, rows * CELL + 0.35 + 0.2)


def test_reconstructions(trained, tmp_path):
    models, x, _ = trained
    path = plotting.plot_reconstructions(models[2], x, tmp_path / "r.png", num=12, ncol=6)
    assert path == str(tmp_path / "r.png")
    _check_png(path, _grid(4, 6, left=1.1))  # 2 rows of 6 inputs, each above its reconstructions


def test_prior_samples(trained, tmp_path):
    path = plotting.plot_prior_samples(trained[0][5], tmp_path / "s.png", num=20, ncol=5, dpi=80)
    _check_png(path, _grid(4, 5), dpi=80)


def test_latent_traversals_pick_the_most_active_dims(trained, tmp_path):
    models, x, _ = trained
    path = plotting.plot_latent_traversals(models[5], tmp_path / "t.png", x=x, num_steps=7, max_dims=3)
    _check_png(path, _grid(3, 7, left=0.6))
    path = plotting.plot_latent_traversals(models[2], tmp_path / "t2.png")  # from the prior median
    _check_png(path, _grid(2, 11, left=0.6))
    with pytest.raises(DataError, match=r"dims must lie in \[0, 2\), got \[4\]"):
        plotting.plot_latent_traversals(models[2], tmp_path / "t3.png", dims=[0, 4])


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolations(trained, tmp_path, method):
    models, x, _ = trained
    path = plotting.plot_interpolations(models[5], x[:3], x[3:6], tmp_path / "i.png", num_steps=6, method=method)
    _check_png(path, _grid(3, 8))


def test_manifold_is_the_prior_quantile_grid(trained, tmp_path):
    models, _, _ = trained
    path = plotting.plot_manifold(models[2], tmp_path / "m.png", num=10)
    _check_png(path, (8.8, 9.05))
    q = plotting._prior_quantiles(models[2], (torch.arange(10) + 0.5) / 10)
    # Standard normal prior: the inverse CDF of 0.05 ... 0.95.
    expected = torch.distributions.Normal(0.0, 1.0).icdf((torch.arange(10) + 0.5) / 10)
    torch.testing.assert_close(q, expected[:, None].expand(10, 2))
    with pytest.raises(DataError, match="needs a 2-D latent space, got latent_dim = 5"):
        plotting.plot_manifold(models[5], tmp_path / "m5.png")


def test_latent_codes(trained, tmp_path):
    models, x, labels = trained
    for dim in (2, 5):  # 5-D codes are projected on two principal components
        path = plotting.plot_latent_codes(
            models[dim], x, labels, tmp_path / f"c{dim}.png", class_names=FASHION_MNIST_CLASSES
        )
        _check_png(path, (7.0, 6.0))
    with pytest.raises(DataError, match=r"labels must have one entry per image \(300\), got 5"):
        plotting.plot_latent_codes(models[2], x, labels[:5], tmp_path / "c.png")
    with pytest.raises(DataError, match=r"x must be images of shape \(N, 1, 28, 28\), got \(300, 784\)"):
        plotting.plot_latent_codes(models[2], x.flatten(1), labels, tmp_path / "c.png")


def test_training_curves_plot_whichever_known_columns_exist(tmp_path):
    vae_rows = [
        {"epoch": e, "step": 10 * e, "train_elbo": -200.0 + e, "test_elbo": -201.0 + e, "seconds": 1.0}
        for e in range(1, 6)
    ]
    path = plotting.plot_training_curves(vae_rows, tmp_path / "v.png")
    _check_png(path, (5.5, 3.6))  # one panel
    gan_rows = [{"epoch": e, "loss_d": 1.0 / e, "loss_g": 0.5 * e, "fid": 30.0 - e} for e in range(1, 4)]
    _check_png(plotting.plot_training_curves(gan_rows, tmp_path / "g.png"), (11.0, 3.6))  # two panels
    mixed = [dict(r, kl=10.0, test_kl=11.0, mi=2.0, active_units=7, kl_weight=0.5) for r in vae_rows]
    _check_png(plotting.plot_training_curves(mixed, tmp_path / "m.png"), (11.0, 10.8))  # five panels
    with pytest.raises(DataError, match="no metrics to plot"):
        plotting.plot_training_curves([], tmp_path / "e.png")
    with pytest.raises(DataError, match=r"no column to plot \(columns: epoch, method\)"):
        plotting.plot_training_curves([{"epoch": 1, "method": "x"}], tmp_path / "e.png")


def test_curve_panels_sort_columns_by_their_words():
    panels = plotting.curve_panels(
        [
            "epoch",
            "train_elbo",
            "test_log_px",
            "kl",
            "test_kl",
            "kl_weight",
            "test_kl_weight",
            "loss_d",
            "d_loss",
            "mi",
            "active_units",
            "fid",
            "seconds",
            "unknown",
        ]
    )
    panels = {title: (unit, members) for title, unit, members in panels}
    assert panels == {
        "ELBO and log p(x)": ("nats per example", [("train_elbo", "train ELBO"), ("test_log_px", "test log p(x)")]),
        "KL(q||p)": ("nats per example", [("kl", "KL(q||p)"), ("test_kl", "test KL(q||p)")]),
        "Losses": ("loss", [("loss_d", "discriminator loss"), ("d_loss", "discriminator loss")]),
        "Mutual information I(x; z)": ("nats", [("mi", "mutual information I(x; z)")]),
        "Active units": ("count", [("active_units", "active units")]),
        "KL weight": ("weight", [("kl_weight", "KL weight"), ("test_kl_weight", "test KL weight")]),
        "Fréchet distance": ("distance", [("fid", "Fréchet distance")]),
    }


def _curve_figure(rows, tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plotting, "_save", lambda fig, path, dpi: figures.append(fig) or path)
    plotting.plot_training_curves(rows, tmp_path / "c.png")
    return figures[0]


def test_curve_panels_are_honest_about_the_columns_present(tmp_path, monkeypatch):
    rows = [
        {
            "epoch": e,
            "step": 20 * e,
            "train_elbo": -300.0 + e,
            "test_elbo": -290.0 + e,
            "kl": 20.0 + e,
            "mi": 3.0,
            "active_units": 12 + e,
            "seconds": 2.5,
        }
        for e in (1, 2, 3)
    ]
    fig = _curve_figure(rows, tmp_path, monkeypatch)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    # No log p(x) and no reconstruction in the metrics: the titles do not promise them.
    assert [ax.get_title() for ax in axes] == ["ELBO", "KL(q||p)", "Mutual information I(x; z)", "Active units"]
    assert [ax.get_ylabel() for ax in axes] == ["nats per example", "nats per example", "nats", "count"]
    assert [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes] == [
        ["train ELBO", "test ELBO"],
        ["KL(q||p)"],
        ["mutual information I(x; z)"],
        ["active units"],
    ]
    assert all(list(ax.get_xticks()) == [1, 2, 3] for ax in axes)  # whole epochs
    assert len(fig.axes) == 4  # no empty panel
    assert all(float(t).is_integer() for t in axes[3].get_yticks())  # a count has whole ticks


def test_one_epoch_of_a_gan_has_whole_epoch_ticks_and_an_odd_panel_spans_the_row(tmp_path, monkeypatch):
    fig = _curve_figure(
        [{"epoch": 1, "loss_d": 1.2, "loss_g": 0.8, "fid": 40.0, "kl_weight": 1.0}], tmp_path, monkeypatch
    )
    assert [ax.get_title() for ax in fig.axes] == ["Losses", "KL weight", "Fréchet distance"]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["discriminator loss", "generator loss"]
    assert all(list(ax.get_xticks()) == [1] for ax in fig.axes)
    last, first = fig.axes[-1].get_position(), fig.axes[0].get_position()
    assert last.width > 1.5 * first.width  # the third panel fills its row instead of leaving a blank one


def test_training_grids_are_large_titled_and_say_their_layout_and_binarization(tmp_path, monkeypatch):
    from pyrogen import plotting
    from pyrogen.cli import _binarized_note

    figures = []
    monkeypatch.setattr(plotting, "_save", lambda fig, path, dpi: figures.append((fig, dpi)) or path)
    x = torch.rand(12, 1, 28, 28)
    note = _binarized_note({"data": {"binarize": "dynamic"}})
    assert note == "inputs binarized: each pixel drawn once from Bernoulli(grey level)"
    assert _binarized_note({"data": {"binarize": "none"}}) is None
    plotting.plot_reconstruction_pairs(x, x.flip(0), tmp_path / "r.png", note=note)
    plotting.plot_image_grid(torch.rand(64, 1, 28, 28), tmp_path / "s.png", "Mean images of 64 draws")
    (recon, dpi), (samples, _) = figures
    assert recon._suptitle.get_text().splitlines() == [
        "Inputs (rows marked input) and their reconstructions (the row below each)",
        note,
    ]
    assert [t.get_text() for t in recon.axes[0].get_yticklabels()] == ["input", "reconstruction"] * 2
    assert samples._suptitle.get_text() == "Mean images of 64 draws"
    # 55 pixels per 28-pixel image: about twice the 242-pixel grid of before.
    assert samples.get_size_inches()[0] * dpi >= 8 * 55


def test_a_two_layer_vae_is_plotted_through_its_lower_code(trained, tmp_path):
    """TwoLayerVAE (which has no ``posterior`` nor ``latent_dim``): every model plot is written, from
    z1, the code its decoder reads; codes are the means of q(z1|x), and prior draws are those of the
    marginal p(z1): z2 ~ N(0, I), z1 ~ p(z1|z2), the same numbers as drawing them by hand."""
    _, x, labels = trained
    torch.manual_seed(0)
    vae = TwoLayerVAE(latent_dims=(6, 3), hidden=((32,), (16,))).eval()
    view = plotting._view(vae)
    assert view.latent_dim == 6 and plotting._view(view) is view
    torch.testing.assert_close(plotting.posterior_codes(view, x[:10]), vae.encode(x[:10])["loc"])
    torch.manual_seed(1)
    drawn = view.prior().sample((4,))
    torch.manual_seed(1)
    params = vae.decoder2(vae.prior().sample((4,)))
    torch.testing.assert_close(drawn, torch.distributions.Normal(params["loc"], params["scale"]).sample())
    assert drawn.shape == (4, 6)
    _check_png(plotting.plot_reconstructions(vae, x, tmp_path / "r.png", num=12, ncol=6), _grid(4, 6, left=1.1))
    _check_png(plotting.plot_prior_samples(vae, tmp_path / "s.png", num=20, ncol=5), _grid(4, 5))
    _check_png(
        plotting.plot_latent_traversals(vae, tmp_path / "t.png", x=x, num_steps=7, max_dims=3), _grid(3, 7, left=0.6)
    )
    _check_png(plotting.plot_interpolations(vae, x[:3], x[3:6], tmp_path / "i.png", num_steps=6), _grid(3, 8))
    _check_png(plotting.plot_latent_codes(vae, x, labels, tmp_path / "c.png"), (7.0, 6.0))
