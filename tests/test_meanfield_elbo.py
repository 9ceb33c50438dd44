"""The lean TraceMeanField_ELBO loss: Pyro's value and gradients to the bit, on the same draws."""

import warnings

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrogen.infer import MeanField_ELBO, TorchSVI
from pyrogen.infer.meanfield_elbo import meanfield_differentiable_loss
from pyrogen.models import VAE


def _loss_and_grads(loss_fn, params, seed=3):
    """``loss_fn()`` on the draws of ``seed``, with the gradients of ``params`` (None where unused)."""
    pyro.set_rng_seed(seed)
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), grads


def assert_bitwise_equal(first, second):
    """Equal losses and gradients, every element to the bit (``torch.equal``), None where either is None."""
    (loss1, grads1), (loss2, grads2) = first, second
    assert loss1.dtype == loss2.dtype and torch.equal(loss1, loss2), (loss1.item(), loss2.item())
    for g1, g2 in zip(grads1, grads2):
        assert (g1 is None) == (g2 is None)
        if g1 is not None:
            assert torch.equal(g1, g2)


@pytest.mark.parametrize("num_particles", [1, 3])
@pytest.mark.parametrize("kl_weight", [1.0, 0.7])
def test_vae_loss_and_grads_equal_pyros_to_the_bit(num_particles, kl_weight):
    vae = VAE(latent_dim=4, hidden=(16,))
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.4))
    params = list(vae.parameters())
    with pyro.validation_enabled(False):
        results = [_loss_and_grads(lambda: elbo.differentiable_loss(vae.model, vae.guide, x, kl_weight=kl_weight),
                                   params)
                   for elbo in (TraceMeanField_ELBO(num_particles=num_particles),
                                MeanField_ELBO(num_particles=num_particles))]
    assert_bitwise_equal(*results)


def _sites_without_a_closed_form():
    """A model/guide pair with every branch of the loss: an analytic KL under ``poutine.scale`` and a mask,
    a latent site whose KL is not registered (Normal guide, StudentT prior), a subsampled plate and an
    auxiliary guide site."""
    loc = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1, 0.5]))
    log_scale = torch.nn.Parameter(torch.tensor([-0.5, 0.1, 0.2, -0.1]))
    aux_loc = torch.nn.Parameter(torch.tensor(0.4))
    data = torch.tensor([0.5, -1.0, 2.0, 0.3])
    mask = torch.tensor([True, False, True, True])

    def model():
        with pyro.plate("data", 4, subsample_size=3) as i:
            with poutine.scale(scale=0.6), poutine.mask(mask=mask[i]):
                a = pyro.sample("a", dist.Normal(0.0, 1.0))
            b = pyro.sample("b", dist.StudentT(4.0, 0.0, 1.0))
            pyro.sample("x", dist.Normal(a + b, 1.0), obs=data[i])

    def guide():
        pyro.sample("aux", dist.Normal(aux_loc, 1.0), infer={"is_auxiliary": True})
        with pyro.plate("data", 4, subsample_size=3) as i:
            with poutine.scale(scale=0.6), poutine.mask(mask=mask[i]):
                pyro.sample("a", dist.Normal(loc[i], log_scale[i].exp()))
            pyro.sample("b", dist.Normal(loc[i] + 1.0, 0.5))

    return model, guide, [loc, log_scale, aux_loc]


@pytest.mark.parametrize("num_particles", [1, 2])
def test_every_branch_equals_pyros_to_the_bit(num_particles):
    model, guide, params = _sites_without_a_closed_form()
    with pyro.validation_enabled(False):
        results = [_loss_and_grads(lambda: elbo.differentiable_loss(model, guide), params)
                   for elbo in (TraceMeanField_ELBO(num_particles=num_particles),
                                MeanField_ELBO(num_particles=num_particles))]
    assert_bitwise_equal(*results)
    assert all(g is not None for g in results[1][1])  # every branch reaches a parameter


def test_under_validation_it_is_pyros_method_with_its_warnings():
    def model():
        pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Normal(0.0, 1.0))

    def guide():  # the sites in the other order: Pyro's mean-field check warns
        pyro.sample("b", dist.Normal(0.2, 1.0))
        pyro.sample("a", dist.Normal(0.1, 1.0))

    for elbo in (TraceMeanField_ELBO(), MeanField_ELBO()):
        with pyro.validation_enabled(True), pytest.warns(UserWarning, match="Failed to verify mean field"):
            elbo.differentiable_loss(model, guide)


def test_torch_svi_takes_the_lean_path_for_pyros_meanfield_elbo():
    vae = VAE(latent_dim=4, hidden=(16,))
    svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters()), TraceMeanField_ELBO())
    assert svi.loss_module._differentiable_loss.func is meanfield_differentiable_loss

    class Subclass(TraceMeanField_ELBO):  # may override the loss: left alone
        pass

    elbo = Subclass()
    svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters()), elbo)
    assert svi.loss_module._differentiable_loss == elbo.differentiable_loss


def test_torch_svi_steps_equal_steps_on_pyros_loss():
    """Three TorchSVI steps with TraceMeanField_ELBO equal three hand-written steps on Pyro's own method."""
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3))
    torch.manual_seed(0)
    fast, reference = VAE(latent_dim=3, hidden=(8,)), VAE(latent_dim=3, hidden=(8,))
    reference.load_state_dict(fast.state_dict())
    svi = TorchSVI(fast.model, fast.guide, torch.optim.Adam(fast.parameters(), lr=1e-2), TraceMeanField_ELBO())
    optim = torch.optim.Adam(reference.parameters(), lr=1e-2)
    with pyro.validation_enabled(False), warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either way
        for step in range(3):
            pyro.set_rng_seed(step)
            loss = svi.step(x)
            pyro.set_rng_seed(step)
            optim.zero_grad(set_to_none=True)
            expected = TraceMeanField_ELBO().differentiable_loss(reference.model, reference.guide, x)
            expected.backward()
            optim.step()
            assert torch.equal(loss, expected.detach())
    for p, q in zip(fast.parameters(), reference.parameters()):
        assert torch.equal(p, q)


def test_per_example_loss_takes_the_lean_path_with_pyros_values():
    from pyrogen.optim import PerExampleLoss

    vae = VAE(latent_dim=4, hidden=(16,))
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.4))
    wrapped = PerExampleLoss(TraceMeanField_ELBO())
    svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters()), wrapped)
    assert svi.loss_module._differentiable_loss.args[0].func is meanfield_differentiable_loss
    params = list(vae.parameters())
    with pyro.validation_enabled(False):
        results = [_loss_and_grads(lambda: loss(vae.model, vae.guide, x), params)
                   for loss in (wrapped.differentiable_loss, svi.loss_module._differentiable_loss)]
    assert_bitwise_equal(*results)
