"""IWAE_ELBO: the per-example importance-weighted bound and its DReG gradient, against closed forms.

The linear-Gaussian model (probabilistic PCA) has log p(x) and the ELBO of a
diagonal Gaussian guide in closed form; a Bernoulli model whose weights take
two values has the IWAE bound of every K in closed form, per example and for
the batch as one latent (what :class:`pyro.infer.RenyiELBO` computes).
Statistical checks use fixed seeds and tolerances of four standard errors.
"""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO
from torch import nn

from pyrogen.infer import IWAE_ELBO, TorchSVI
from pyrogen.models import VAE
from pyrogen.testing import check_model_guide

D, Z, SIGMA = 5, 2, 0.5


class LinearGaussian(nn.Module):
    """z ~ N(0, I_Z), x | z ~ N(W z + b, SIGMA^2 I_D), with b a parameter (the model's theta)."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, Z, generator=g, dtype=torch.float64)
        self.b = nn.Parameter(torch.randn(D, generator=g, dtype=torch.float64))

    def model(self, x, size=None, subsample=None):
        with pyro.plate("data", size or x.shape[0], subsample=subsample):
            z = pyro.sample("z", dist.Normal(torch.zeros(Z, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, SIGMA).to_event(1), obs=x)

    def exact_log_px(self, x):
        cov = self.W @ self.W.T + SIGMA**2 * torch.eye(D, dtype=x.dtype)
        return dist.MultivariateNormal(self.b.detach(), cov).log_prob(x)

    def posterior(self, x):
        precision = torch.eye(Z, dtype=x.dtype) + self.W.T @ self.W / SIGMA**2
        cov = torch.linalg.inv(precision)
        return (x - self.b.detach()) @ self.W @ cov.T / SIGMA**2, cov

    def closed_form_elbo(self, x, loc, scale):
        mean_x = loc @ self.W.T + self.b.detach()
        expected = dist.Normal(mean_x, SIGMA).log_prob(x).sum(-1) - ((self.W**2) @ (scale**2).T).T.sum(-1) / (
            2 * SIGMA**2
        )
        return expected - 0.5 * (loc**2 + scale**2 - 1 - torch.log(scale**2)).sum(-1)


class DiagonalGuide(nn.Module):
    """q(z_b | x_b) = N(loc_b, diag scale_b^2) with one free (loc, log scale) per example: phi."""

    def __init__(self, loc, scale):
        super().__init__()
        self.loc = nn.Parameter(loc.clone())
        self.log_scale = nn.Parameter(scale.log().clone())

    def guide(self, x, size=None, subsample=None):
        with pyro.plate("data", size or x.shape[0], subsample=subsample) as idx:
            pyro.sample("z", dist.Normal(self.loc[idx], self.log_scale[idx].exp()).to_event(1))


@pytest.fixture
def linear_gaussian():
    m = LinearGaussian()
    g = torch.Generator().manual_seed(1)
    x = (
        m.b.detach()
        + torch.randn(3, Z, generator=g, dtype=torch.float64) @ m.W.T
        + SIGMA * torch.randn(3, D, generator=g, dtype=torch.float64)
    )
    return m, x


def _mean_field_guide(m, x, copies, shift=0.0):
    """The posterior's means (shifted) and marginal standard deviations: not exact (z's coordinates correlate)."""
    mean, cov = m.posterior(x)
    return DiagonalGuide((mean + shift).repeat(copies, 1), cov.diagonal().sqrt().expand(x.shape[0] * copies, Z))


def test_k1_is_the_elbo_on_the_same_draws(linear_gaussian):
    m, x = linear_gaussian
    q = _mean_field_guide(m, x, 1, shift=0.3)
    for dreg in (False, True):
        pyro.set_rng_seed(5)
        iwae = IWAE_ELBO(num_particles=1, dreg=dreg).differentiable_loss(m.model, q.guide, x)
        pyro.set_rng_seed(5)
        elbo = Trace_ELBO().differentiable_loss(m.model, q.guide, x)
        torch.testing.assert_close(iwae, elbo, rtol=1e-12, atol=1e-12)


def test_bound_rises_with_k_towards_exact_log_px(linear_gaussian):
    m, x = linear_gaussian
    copies = 200  # independent estimates of each example's bound, in one vectorized call
    q = _mean_field_guide(m, x, copies, shift=0.3)
    xs = x.repeat(copies, 1)
    exact = m.exact_log_px(x).sum().item()
    means, ses = [], []
    for k in (1, 10, 100, 1000):
        with torch.no_grad():
            log_w, _ = IWAE_ELBO(num_particles=k).log_weights(m.model, q.guide, xs)
        bound = (torch.logsumexp(log_w, 0) - math.log(k)).reshape(copies, -1).sum(1)  # (copies,)
        means.append(bound.mean().item())
        ses.append(bound.std().item() / math.sqrt(copies))
    closed_form_elbo = m.closed_form_elbo(x, q.loc[:3].detach(), q.log_scale[:3].exp().detach()).sum().item()
    assert abs(means[0] - closed_form_elbo) < 4 * ses[0]  # L_1 is the ELBO
    for (a, sa), (b, sb) in zip(zip(means, ses), zip(means[1:], ses[1:])):
        assert b - a > -4 * math.hypot(sa, sb), means  # rises with K
    assert means[1] - means[0] > 4 * math.hypot(ses[0], ses[1])  # and visibly so at first
    assert means[-1] < exact + 4 * ses[-1]  # a lower bound
    assert exact - means[-1] < 0.01 + 4 * ses[-1]  # within 0.01 nats of log p(x) at K = 1000
    assert exact - means[0] > 0.1  # while the ELBO is not


# Bernoulli model with two-valued weights: prior = guide = Bernoulli(1/2), p(x=1 | z) = A if z else C.
A, C, B, K = 0.95, 0.05, 6, 4
P_J = [math.comb(K, j) / 2**K for j in range(K + 1)]  # j of the K particles have z = 1


def _two_valued_model(x, size=None, subsample=None, global_site=False):
    if global_site:  # a latent shared by the batch whose weight is exactly 1: the guide equals the prior
        pyro.sample("g", dist.Normal(0.0, 1.0))
    with pyro.plate("data", size or x.shape[0], subsample=subsample):
        z = pyro.sample("z", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Bernoulli(C + (A - C) * z), obs=x)


def _two_valued_guide(x, size=None, subsample=None, global_site=False):
    if global_site:
        pyro.sample("g", dist.Normal(0.0, 1.0))
    with pyro.plate("data", size or x.shape[0], subsample=subsample):
        pyro.sample("z", dist.Bernoulli(0.5))


def _per_example_bound(power=1.0):
    """E log (1/K) sum_k w_k^power for one example with x = 1, exactly."""
    return sum(p * math.log((j * A**power + (K - j) * C**power) / K) for j, p in enumerate(P_J))


def _batch_bound():
    """E log (1/K) sum_k prod_b w_kb for B examples as one latent: a particle's weight is A^m C^(B-m),
    m ~ Bin(B, 1/2)."""
    total = 0.0
    for combo in itertools.product(range(B + 1), repeat=K):
        prob = math.prod(math.comb(B, m) / 2**B for m in combo)
        total += prob * math.log(sum(A**m * C ** (B - m) for m in combo) / K)
    return total


def test_renyi_elbo_gives_the_same_bound_when_every_site_is_in_the_data_plate(linear_gaussian):
    # Pyro >= 1.4 (pull request 2321) sums log-weights only over plates not shared by every site,
    # so without subsampling its alpha = 0 bound is ours, draw for draw.
    m, x = linear_gaussian
    q = _mean_field_guide(m, x, 1, shift=0.3)
    pyro.set_rng_seed(4)
    ours = IWAE_ELBO(num_particles=10, max_plate_nesting=1).loss(m.model, q.guide, x)
    pyro.set_rng_seed(4)
    pyros = RenyiELBO(alpha=0, num_particles=10, vectorize_particles=True, max_plate_nesting=1).loss(
        m.model, q.guide, x
    )
    assert ours == pytest.approx(pyros, rel=1e-12)


def test_subsample_scale_goes_outside_the_log_mean_exp_unlike_renyi_elbo():
    # Subsampling n of N = 2n examples: we estimate sum_n L_K(x_n) by (N/n) sum_b L_K(x_b);
    # RenyiELBO scales the log-weights inside the log-mean-exp, estimating E log mean_k w_k^2 per example.
    n, scale = 3000, 2
    x, idx = torch.ones(n), torch.arange(n)
    ours = (
        -IWAE_ELBO(num_particles=K, max_plate_nesting=1).loss(
            _two_valued_model, _two_valued_guide, x, size=scale * n, subsample=idx
        )
        / n
    )
    pyros = (
        -RenyiELBO(alpha=0, num_particles=K, vectorize_particles=True, max_plate_nesting=1).loss(
            _two_valued_model, _two_valued_guide, x, size=scale * n, subsample=idx
        )
        / n
    )
    # per-example terms lie in [scale log C, scale log A]: a standard deviation of at most half that range
    se = scale * (math.log(A) - math.log(C)) / 2 / math.sqrt(n)
    assert abs(ours - scale * _per_example_bound()) < 4 * se
    assert abs(pyros - _per_example_bound(power=scale)) < 4 * se
    assert _per_example_bound(power=scale) - scale * _per_example_bound() > 0.5  # 0.56 nats per example


def _shared_latent_model(x):
    """R independent batches (plate "batches") of B examples, each with a latent g shared by its batch."""
    with pyro.plate("batches", x.shape[0], dim=-2):
        pyro.sample("g", dist.Normal(0.0, 1.0))  # the guide equals the prior: a weight of exactly 1
        with pyro.plate("data", x.shape[1], dim=-1):
            z = pyro.sample("z", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Bernoulli(C + (A - C) * z), obs=x)


def _shared_latent_guide(x):
    with pyro.plate("batches", x.shape[0], dim=-2):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[1], dim=-1):
            pyro.sample("z", dist.Bernoulli(0.5))


def test_a_shared_latent_makes_renyi_elbo_bound_the_batch_as_one_latent():
    # pyro-ppl/pyro issue 3104: when a site is outside the data plate, RenyiELBO sums the data plate
    # before the log-mean-exp (here per batch, as "batches" encloses every site).
    # IWAE_ELBO refuses such a model rather than bound the batch.
    per_example, batch = B * _per_example_bound(), _batch_bound()
    assert per_example - batch > 1.0  # nats (1.44)
    batches = 2000
    x = torch.ones(batches, B)
    renyi = RenyiELBO(alpha=0, num_particles=K, vectorize_particles=True, max_plate_nesting=2)
    pyros = -renyi.loss(_shared_latent_model, _shared_latent_guide, x) / batches
    # a batch's bound lies in [B log C, B log A]: a standard deviation of at most half that range
    se = B * (math.log(A) - math.log(C)) / 2 / math.sqrt(batches)
    assert abs(pyros - batch) < 4 * se
    with pytest.raises(ValueError, match="not inside that plate"):
        IWAE_ELBO(num_particles=K).loss(_two_valued_model, _two_valued_guide, x[0], global_site=True)


def _guide_gradients(m, x, q, dreg, seed):
    q.zero_grad()
    m.zero_grad()
    pyro.set_rng_seed(seed)
    IWAE_ELBO(num_particles=50, dreg=dreg).differentiable_loss(m.model, q.guide, x).backward()
    return torch.cat([q.loc.grad, q.log_scale.grad], -1), m.b.grad.clone()


def test_dreg_has_the_iwae_gradient_in_expectation_with_lower_variance(linear_gaussian):
    m, x = linear_gaussian
    copies = 1000  # each copy's (loc, log scale) gets its own gradient draw from one backward pass
    q = _mean_field_guide(m, x[:1], copies, shift=0.3)
    xs = x[:1].repeat(copies, 1)
    iwae, model_iwae = _guide_gradients(m, xs, q, dreg=False, seed=7)
    dreg, model_dreg = _guide_gradients(m, xs, q, dreg=True, seed=7)
    # the model's gradient stays the IWAE one, exactly, on the same draws
    torch.testing.assert_close(model_dreg, model_iwae, rtol=1e-10, atol=1e-10)
    # the same expectation: per coordinate within 4 standard errors of the difference
    se = (iwae.var(0) / copies + dreg.var(0) / copies).sqrt()
    assert ((iwae.mean(0) - dreg.mean(0)).abs() < 4 * se).all(), (iwae.mean(0), dreg.mean(0), se)
    # at K = 50 DReG's variance is lower in every coordinate (ratios 0.09 to 0.6 at this seed),
    # and less than a third in total
    ratio = dreg.var(0) / iwae.var(0)
    assert (ratio < 0.8).all(), ratio
    assert dreg.var(0).sum() < iwae.var(0).sum() / 3, ratio


class _ParamStoreGuide:
    def __init__(self, loc, scale):
        self.loc, self.log_scale = loc, scale.log()

    def guide(self, x):
        loc = pyro.param("loc", self.loc.clone())
        log_scale = pyro.param("log_scale", self.log_scale.clone())
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def test_dreg_stops_param_store_parameters_as_module_parameters(linear_gaussian):
    m, x = linear_gaussian
    q = _mean_field_guide(m, x, 1)
    module_grads, _ = _guide_gradients(m, x, q, dreg=True, seed=3)
    store = _ParamStoreGuide(q.loc.detach(), q.log_scale.detach().exp())
    pyro.set_rng_seed(3)
    IWAE_ELBO(num_particles=50, dreg=True).differentiable_loss(m.model, store.guide, x).backward()
    store_grads = torch.cat([pyro.param("loc").grad, pyro.param("log_scale").unconstrained().grad], -1)
    torch.testing.assert_close(store_grads, module_grads, rtol=1e-10, atol=1e-10)


def test_subsample_scale_multiplies_each_examples_bound(linear_gaussian):
    m, x = linear_gaussian
    q = _mean_field_guide(m, x, 1)
    idx = torch.tensor([0, 2])
    elbo = IWAE_ELBO(num_particles=20)
    pyro.set_rng_seed(2)
    subsampled = elbo.loss(m.model, q.guide, x[idx], size=10, subsample=idx)
    pyro.set_rng_seed(2)
    full = elbo.loss(m.model, q.guide, x[idx], size=2, subsample=idx)
    assert subsampled == pytest.approx(10 / 2 * full, rel=1e-12)


@pytest.mark.parametrize("dreg", [False, True])
def test_vae_trains_with_iwae_under_pyro_svi_and_torch_svi(dreg, one_thread):
    vae = VAE(latent_dim=2, hidden=(16,))
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    before, after = check_model_guide(vae.model, vae.guide, x, loss=IWAE_ELBO(num_particles=5, dreg=dreg))
    assert after < before
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), IWAE_ELBO(5, dreg=dreg))
    first = svi.evaluate_loss(x)
    for _ in range(10):
        svi.step(x)
    torch_svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters(), 1e-2), IWAE_ELBO(5, dreg=dreg))
    for _ in range(10):
        torch_svi.step(x)
    assert torch_svi.evaluate_loss(x).item() < first


def test_dreg_refuses_a_recording_that_would_drop_its_stop_gradients():
    # make_fx without pre_dispatch (CompiledLoss's recording) turns .detach() into an alias
    from torch.fx.experimental.proxy_tensor import make_fx

    vae = VAE(latent_dim=2, hidden=(8,))
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    elbo = IWAE_ELBO(num_particles=3, dreg=True, max_plate_nesting=1)
    with pytest.raises(NotImplementedError, match="without pre_dispatch"):
        make_fx(lambda x: elbo.differentiable_loss(vae.model, vae.guide, x))(x)


@pytest.mark.parametrize("dreg", [False, True])
def test_compiled_iwae_gradients_equal_eager(dreg):
    # CompiledLoss records with pre_dispatch, which keeps DReG's stop-gradients: same draws, same gradients
    from pyrogen.infer import CompiledLoss, ELBOModule

    vae = VAE(latent_dim=2, hidden=(8,))
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    elbo = IWAE_ELBO(num_particles=3, dreg=dreg, max_plate_nesting=1)
    eager, compiled = ELBOModule(vae.model, vae.guide, elbo), CompiledLoss(ELBOModule(vae.model, vae.guide, elbo))
    grads = []
    for loss_module in (eager, compiled):
        vae.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        with pyro.validation_enabled(False):
            loss = loss_module(x)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in vae.parameters()]))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-5, atol=1e-4)
    for compiled_grad, eager_grad in zip(grads[1][1], grads[0][1]):
        torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-4, atol=1e-5)


def _dreg_gradients(module, x, one_pass, seed=11):
    elbo = IWAE_ELBO(num_particles=7, dreg=True)
    elbo.one_pass = one_pass
    module.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = elbo.differentiable_loss(module.model, module.guide, x)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["vae", "vamp", "two-layer"])
def test_one_pass_dreg_has_the_two_pass_value_and_gradients(kind, one_thread):
    """DReG's one model pass (per-particle gradient scale) against the two-pass surrogate, same draws:
    the same loss to float32 rounding and the same gradient for every parameter (rtol 1e-4, atol
    1e-5 x the gradient's scale): a plain VAE, a VampPrior whose prior shares the guide's encoder,
    and the two-layer model whose guide draws z2 from q(z2|z1)."""
    from pyrogen.models import TwoLayerVAE

    torch.manual_seed(0)
    module = {
        "vae": lambda: VAE(latent_dim=3, hidden=(16,)),
        "vamp": lambda: VAE(latent_dim=3, hidden=(16,), prior="vamp:4"),
        "two-layer": lambda: TwoLayerVAE(latent_dims=(4, 2), hidden=((16,), (8,))),
    }[kind]()
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(2))
    with pyro.validation_enabled(False):
        loss1, grads1 = _dreg_gradients(module, x, one_pass=True)
        loss2, grads2 = _dreg_gradients(module, x, one_pass=False)
    torch.testing.assert_close(loss1, loss2, rtol=1e-6, atol=1e-4)
    assert grads1.keys() == grads2.keys() and len(grads1) == len(list(module.parameters()))
    for name in grads1:
        g1, g2 = grads1[name], grads2[name]
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5 * max(g2.abs().max().item(), 1.0), msg=name)
