"""Every plot function writes a non-blank PNG of the expected pixel size from a tiny trained model."""

import os

import numpy as np
import pyro
import pytest
import torch
from PIL import Image

from tests.conftest import requires_fashion_mnist
from pyrogen import plotting
from pyrogen.data import FASHION_MNIST_CLASSES
from pyrogen.errors import DataError
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.models import VAE, TwoLayerVAE

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
    path = plotting.plot_interpolations(models[5], x[:3], x[3:6], tmp_path / "i.png", num_steps=6,
                                        method=method)
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
        path = plotting.plot_latent_codes(models[dim], x, labels, tmp_path / f"c{dim}.png",
                                          class_names=FASHION_MNIST_CLASSES)
        _check_png(path, (7.0, 6.0))
    with pytest.raises(DataError, match=r"labels must have one entry per image \(300\), got 5"):
        plotting.plot_latent_codes(models[2], x, labels[:5], tmp_path / "c.png")
    with pytest.raises(DataError, match=r"x must be images of shape \(N, 1, 28, 28\), got \(300, 784\)"):
        plotting.plot_latent_codes(models[2], x.flatten(1), labels, tmp_path / "c.png")


def test_training_curves_plot_whichever_known_columns_exist(tmp_path):
    vae_rows = [{"epoch": e, "step": 10 * e, "train_elbo": -200.0 + e, "test_elbo": -201.0 + e,
                 "seconds": 1.0} for e in range(1, 6)]
    path = plotting.plot_training_curves(vae_rows, tmp_path / "v.png")
    _check_png(path, (5.5, 3.6))  # one panel
    gan_rows = [{"epoch": e, "loss_d": 1.0 / e, "loss_g": 0.5 * e, "fid": 30.0 - e} for e in range(1, 4)]
    _check_png(plotting.plot_training_curves(gan_rows, tmp_path / "g.png"), (11.0, 3.6))  # two panels
    mixed = [dict(r, kl=10.0, test_kl=11.0, mi=2.0, active_units=7, kl_weight=0.5) for r in vae_rows]
    _check_png(plotting.plot_training_curves(mixed, tmp_path / "m.png"), (11.0, 7.2))  # four panels
    with pytest.raises(DataError, match="no metrics to plot"):
        plotting.plot_training_curves([], tmp_path / "e.png")
    with pytest.raises(DataError, match=r"no column to plot \(columns: epoch, method\)"):
        plotting.plot_training_curves([{"epoch": 1, "method": "x"}], tmp_path / "e.png")


def test_curve_panels_sort_columns_by_their_words():
    panels = dict(plotting.curve_panels(
        ["epoch", "train_elbo", "test_log_px", "kl", "test_kl", "kl_weight", "test_kl_weight", "loss_d", "d_loss",
         "mi", "active_units", "fid", "seconds", "unknown"]))
    assert panels == {
        "ELBO and log p(x) (nats per example)": ["train_elbo", "test_log_px"],
        "KL and reconstruction (nats per example)": ["kl", "test_kl"],
        "Losses (GAN: discriminator and generator)": ["loss_d", "d_loss"],
        "Posterior collapse": ["mi", "active_units"],
        "Schedules": ["kl_weight", "test_kl_weight"],
        "Sample quality": ["fid"],
    }



def test_a_two_layer_vae_is_plotted_through_its_lower_code(trained, tmp_path):
    """TwoLayerVAE (which has no ``posterior`` nor ``latent_dim``): every model plot is written, from
    z1, the code its decoder reads; codes are the means of q(z1|x), and prior draws are those of the
    marginal p(z1): z2 ~ N(0, I), z1 ~ p(z1|z2), the same numbers as drawing them by hand."""
    _, x, labels = trained
    torch.manual_seed(0)
    vae = TwoLayerVAE(latent_dims=(6, 3), hidden=((32,), (16,))).eval()
    view = plotting._view(vae)
    assert view.latent_dim == 6 and plotting._view(view) is view
    torch.testing.assert_close(plotting._codes(view, x[:10]), vae.encode(x[:10])["loc"])
    torch.manual_seed(1)
    drawn = view.prior().sample((4,))
    torch.manual_seed(1)
    params = vae.decoder2(vae.prior().sample((4,)))
    torch.testing.assert_close(drawn, torch.distributions.Normal(params["loc"], params["scale"]).sample())
    assert drawn.shape == (4, 6)
    _check_png(plotting.plot_reconstructions(vae, x, tmp_path / "r.png", num=12, ncol=6), _grid(4, 6, left=1.1))
    _check_png(plotting.plot_prior_samples(vae, tmp_path / "s.png", num=20, ncol=5), _grid(4, 5))
    _check_png(plotting.plot_latent_traversals(vae, tmp_path / "t.png", x=x, num_steps=7, max_dims=3),
               _grid(3, 7, left=0.6))
    _check_png(plotting.plot_interpolations(vae, x[:3], x[3:6], tmp_path / "i.png", num_steps=6), _grid(3, 8))
    _check_png(plotting.plot_latent_codes(vae, x, labels, tmp_path / "c.png"), (7.0, 6.0))
