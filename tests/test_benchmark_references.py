"""The step benchmarks' hand-written VAE (benchmarks.references.plain_vae) is pyrogen's VAE, weight for weight."""

import pyro
import pytest
import torch

from benchmarks.references.plain_vae import PlainVAE
from pyrogen.infer import ReparamTraceMeanField_ELBO


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_plain_vae_as_pyrogen_has_its_loss_on_the_same_draws(architecture):
    """The hand-written negative ELBO (analytic KL) and pyrogen's TraceMeanField loss of the converted VAE on
    the same draws: equal up to float32 sums taken in another order (observed 1e-7 relative)."""
    torch.manual_seed(0)
    plain = PlainVAE(architecture)
    vae = plain.as_pyrogen()
    x = (torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    torch.manual_seed(2)
    expected = plain.loss(x)
    torch.manual_seed(2)
    with pyro.validation_enabled(False):
        loss = ReparamTraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
