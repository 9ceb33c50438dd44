"""check_model_guide on correct pairs it used to reject, and on wrong pairs it used to pass."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceEnum_ELBO
from pyro.infer.autoguide import AutoDiagonalNormal, AutoNormal
from torch import nn

from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.testing import assert_guide_matches_model, assert_shapes_agree, check_model_guide


@pytest.fixture
def x():
    return torch.randn(10, generator=torch.Generator().manual_seed(0)) + 1.0


def positive_model(x):
    w = pyro.sample("w", dist.Gamma(2.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(0.0, w), obs=x)


@pytest.mark.parametrize("Guide", [AutoNormal, AutoDiagonalNormal])
def test_autoguides_pass(x, Guide):
    # Before the fix their auxiliary sites (w_unconstrained, _AutoDiagonalNormal_latent) were
    # reported as missing from the model.
    before, after = check_model_guide(positive_model, Guide(positive_model), x, num_steps=5, lr=0.05)
    assert after < before


def test_model_enumerated_site_needs_no_guide_site():
    # A mixture whose assignments TraceEnum_ELBO sums out: before the fix, "model latent site
    # 'assignment' has no site in the guide".
    data = torch.tensor([-2.0, -1.8, 2.1, 1.9, 2.2])

    def model(data):
        locs = pyro.sample("locs", dist.Normal(0.0, 3.0).expand([2]).to_event(1))
        with pyro.plate("data", len(data)):
            c = pyro.sample("assignment", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": "parallel"})
            pyro.sample("obs", dist.Normal(locs[..., c] if locs.dim() > 1 else locs[c], 1.0), obs=data)

    def guide(data):
        loc = pyro.param("q_loc", torch.tensor([-0.5, 0.5]))
        pyro.sample("locs", dist.Normal(loc, 0.3).to_event(1))

    check_model_guide(model, guide, data, loss=TraceEnum_ELBO(max_plate_nesting=1), num_steps=5, lr=0.05)


class PlainVAE(nn.Module):
    """A plain nn.Module (never registered with Pyro), trained by TorchSVI."""

    def __init__(self):
        super().__init__()
        self.decoder = nn.Linear(2, 3)
        self.encoder = nn.Linear(3, 4)

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 1.0).to_event(1), obs=x)

    def guide(self, x):
        loc, log_scale = self.encoder(x).chunk(2, -1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def test_plain_module_for_torch_svi_passes():
    torch.manual_seed(0)
    vae, x = PlainVAE(), torch.randn(6, 3)
    with pytest.raises(AssertionError, match="is not registered with Pyro"):  # right for pyro.infer.SVI
        check_model_guide(vae.model, vae.guide, x, num_steps=0)
    check_model_guide(vae.model, vae.guide, x, loss=ReparamTrace_ELBO(), torch_svi=True, lr=0.01)
    svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=0.01), ReparamTrace_ELBO())
    assert torch.isfinite(svi.step(x))


def test_subsampled_model_plate_against_unsubsampled_guide_plate_fails(x):
    idx = torch.arange(8)

    def model(x):
        with pyro.plate("data", 60000, subsample=idx):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx])

    def guide(x):
        with pyro.plate("data", 8):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(AssertionError, match=r"^site 'z' is in plates of full sizes \{'data': 60000\} in the "
                                             r"model but \{'data': 8\} in the guide"):
        assert_shapes_agree(model, guide, x)


def test_guide_outside_the_prior_support_is_named(x):
    # Before the fix: torch's ValueError about GreaterThanEq, naming no site.
    def guide(x):
        pyro.sample("w", dist.Normal(-5.0, 0.1))

    with pytest.raises(AssertionError, match=r"^guide site 'w' draws from Normal \(support Real\(\)\), values "
                                             r"outside the support GreaterThanEq\(lower_bound=0.0\) of the model's Gamma"):
        check_model_guide(positive_model, guide, x)


def test_observed_site_lacking_obs_is_advised_to_pass_obs(x):
    def model(x):
        w = pyro.sample("w", dist.Gamma(2.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(0.0, w))  # forgot obs=x

    def guide(x):
        pyro.sample("w", dist.Gamma(pyro.param("a", torch.tensor(2.0)), 1.0))

    with pytest.raises(AssertionError, match=r"^model latent site 'x' has no site in the guide.*If 'x' is "
                                             r"data, the model's pyro.sample\('x', ...\) lacks obs=: pass "
                                             r"the data as obs"):
        assert_guide_matches_model(model, guide, x)
