"""ReparamTraceMeanField_ELBO: Pyro's TraceMeanField_ELBO's values and gradients, as one tensor."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO

from pyrogen.infer import ReparamTraceMeanField_ELBO


def _pair():
    torch.manual_seed(0)
    W = torch.randn(3, 5, requires_grad=True)
    V = torch.randn(5, 3, requires_grad=True)
    x = torch.randn(7, 5)

    def model(x):
        with pyro.plate("data", 7):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))  # KL registered
            with poutine.scale(scale=0.3):  # KL weighting as pyrogen does it: the KL is scaled too
                w = pyro.sample("w", dist.Gamma(2.0, 1.0).expand([2]).to_event(1))  # LogNormal||Gamma: none
            pyro.sample("x", dist.Normal(z @ W + w.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", 7):
            pyro.sample("z", dist.Normal(x @ V, 0.5).to_event(1))
            with poutine.scale(scale=0.3):
                pyro.sample("w", dist.LogNormal(x[:, :2] * 0.1, 1.0).to_event(1))

    return model, guide, x, (W, V)


@pytest.mark.parametrize("validate", [False, True])
@pytest.mark.parametrize("num_particles", [1, 3])
def test_equals_trace_mean_field_elbo_on_the_same_draws(validate, num_particles):
    model, guide, x, params = _pair()
    results = []
    for estimator in (TraceMeanField_ELBO, ReparamTraceMeanField_ELBO):
        pyro.set_rng_seed(1)
        with pyro.validation_enabled(validate):
            loss = estimator(num_particles=num_particles).differentiable_loss(model, guide, x)
        results.append((loss.detach(), torch.autograd.grad(loss, params)))
    (pyro_loss, pyro_grads), (loss, grads) = results
    torch.testing.assert_close(loss, pyro_loss, rtol=1e-6, atol=1e-5)
    for a, b in zip(grads, pyro_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-5)


def test_the_gaussian_kl_is_the_closed_form():
    # one site, q = N(m, s), p = N(0, 1), a likelihood that ignores z: the loss is exactly the closed-form KL
    m, s = torch.tensor([0.3, -1.2]), torch.tensor([0.5, 2.0])

    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    def guide():
        pyro.sample("z", dist.Normal(m, s).to_event(1))

    closed_form = (0.5 * (s**2 + m**2 - 1.0) - torch.log(s)).sum()
    assert ReparamTraceMeanField_ELBO().differentiable_loss(model, guide).item() == pytest.approx(
        closed_form.item(), rel=1e-6
    )


def test_it_is_a_trace_mean_field_elbo_and_refuses_what_is_not_reparameterized():
    assert isinstance(ReparamTraceMeanField_ELBO(), TraceMeanField_ELBO)

    def model():
        pyro.sample("k", dist.Poisson(3.0))

    def guide():
        pyro.sample("k", dist.Poisson(2.0))

    with pytest.raises(ValueError, match="guide site 'k' draws from Poisson, which is not reparameterized"):
        ReparamTraceMeanField_ELBO().differentiable_loss(model, guide)
