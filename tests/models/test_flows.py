"""Flow guides: exact log-determinants, a correct density, and a VAE that trains with each flow.

* each amortized transform's ``log_abs_det_jacobian`` equals log|det J| of the
  Jacobian that autograd computes (d = 3, a fixed seed, 1e-4);
* the flow's log q(z|x) equals log q0(z0|x) - log|det dz/dz0| with the
  composed Jacobian from autograd;
* a VAE with each flow passes pyrogen.testing.check_model_guide (which includes
  "20 SVI steps lower the loss"), rebuilds from its config, and says its KL is
  Monte Carlo; TraceMeanField_ELBO is refused before training.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.autograd.functional import jacobian

from pyrogen.distributions import LatentFamilyError, check_guide_family, kl_method
from pyrogen.evaluation import log_importance_weights
from pyrogen.models import VAE
from pyrogen.models.autoencoder import Autoencoder
from pyrogen.models.flows import AmortizedFlow, parse_flow
from pyrogen.testing import check_model_guide
from pyrogen.training import VAETrainer, default_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread beats two on shared cores

SPECS = ["iaf:2", "planar:3", "radial:3"]
IAF_OPTIONS = {
    "": {},
    "+context": {"iaf_context": True},
    "+gated": {"iaf_step": "gated"},
    "+context+gated": {"iaf_context": True, "iaf_step": "gated"},
}
"""The IAF's variants, named by a suffix: the default (no context, affine step) and the others."""
FLOWS = SPECS + [f"iaf:2{suffix}" for suffix in IAF_OPTIONS if suffix]
D, H = 3, 5


def _options(name):
    spec, _, suffix = name.partition("+")
    return spec, IAF_OPTIONS["+" + suffix if suffix else ""]


def _flow(name):
    spec, options = _options(name)
    torch.manual_seed(0)
    flow = AmortizedFlow(spec, D, H, **options)
    with torch.no_grad():  # move away from the near-identity initialisation
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


@pytest.mark.parametrize("spec", FLOWS)
def test_each_log_determinant_equals_the_autograd_jacobians(spec):
    flow = _flow(spec)
    torch.manual_seed(1)
    context, x = torch.randn(4, H), torch.randn(4, D)
    for i in range(4):
        for t in flow.conditioned(context[i : i + 1]):
            y = t(x[i : i + 1])
            J = jacobian(lambda v: t(v.unsqueeze(0)).squeeze(0), x[i])
            assert J.shape == (D, D)
            expected = torch.linalg.slogdet(J).logabsdet
            assert torch.allclose(t.log_abs_det_jacobian(x[i : i + 1], y).reshape(()), expected, atol=1e-4)
            x = x.clone()
            x[i] = y[0].detach()  # the next step's input


@pytest.mark.parametrize("spec", FLOWS)
def test_flow_density_is_base_density_minus_the_composed_log_determinant(spec):
    flow = _flow(spec)
    torch.manual_seed(2)
    context = torch.randn(4, H)
    base = dist.Normal(torch.randn(4, D), torch.rand(4, D) + 0.5).to_event(1)
    q = flow(base, context)
    z0 = base.sample()
    z = z0
    for t in q.transforms:
        z = t(z)
    for i in range(4):
        transforms = flow.conditioned(context[i : i + 1])

        def composed(v):
            v = v.unsqueeze(0)
            for t in transforms:
                v = t(v)
            return v.squeeze(0)

        logdet = torch.linalg.slogdet(jacobian(composed, z0[i])).logabsdet
        expected = base.log_prob(z0)[i] - logdet
        assert torch.allclose(q.log_prob(z)[i], expected, atol=1e-4)
    assert q.batch_shape == (4,) and q.event_shape == (D,) and q.has_rsample


@pytest.mark.parametrize("name", FLOWS)
def test_a_vae_with_a_flow_passes_the_model_guide_checks_and_trains(name):
    spec, options = _options(name)
    torch.manual_seed(0)
    vae = VAE(latent_dim=D, hidden=(16,), flow=spec, **options)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    before, after = check_model_guide(vae.model, vae.guide, x, num_steps=20, lr=1e-2)
    assert after < before
    assert vae.config["flow"] == spec and vae.posterior_family.name == f"normal+{spec}"
    log_w = log_importance_weights(vae.model, vae.guide, x, 4)  # K particles to the left of the data plate
    assert log_w.shape == (4, 8) and torch.isfinite(log_w).all()
    rebuilt = VAE(**vae.config)
    rebuilt.load_state_dict(vae.state_dict())
    assert sorted(rebuilt.state_dict()) == sorted(vae.state_dict())
    assert vae.reconstruct(x).shape == x.shape
    if spec.startswith("iaf"):
        assert (vae.config["iaf_context"], vae.config["iaf_step"]) == (
            options.get("iaf_context", False),
            options.get("iaf_step", "affine"),
        )
    else:
        assert "iaf_context" not in vae.config and "iaf_step" not in vae.config


def test_the_default_iaf_step_is_affine_without_context_and_the_gated_step_contracts():
    """Default: z_k = z_{k-1} exp(s) + m with (m, s) from the MADE of z_{k-1} alone (two different
    contexts give the same z_k), log|det| = sum_i s_i; "gated": sigmoid(s + 2) z + (1 - sigmoid(s + 2)) m,
    whose per-coordinate scale lies in (0, 1)."""
    torch.manual_seed(1)
    z = torch.randn(6, D)
    for t in _flow("iaf:2").transforms:
        m, s = t.arn(z)
        first, second = (ts[0] for ts in (_flow("iaf:2").conditioned(torch.randn(6, H)) for _ in range(2)))
        assert torch.allclose(t(z), z * s.clamp(-5, 3).exp() + m, atol=1e-6)
        assert torch.allclose(first(z), second(z)) and torch.allclose(first(z), _flow("iaf:2").transforms[0](z))
        assert torch.allclose(t.log_abs_det_jacobian(z, t(z)), s.clamp(-5, 3).sum(-1), atol=1e-5)
    for t in _flow("iaf:2+gated").transforms:
        m, s = t.arn(z)
        gate = torch.sigmoid(s + 2.0)
        assert torch.allclose(t(z), gate * z + (1 - gate) * m, atol=1e-6)
        assert (t.log_abs_det_jacobian(z, t(z)) < 0).all()  # every scale in (0, 1)
    context = torch.randn(6, H)
    a, b = (_flow("iaf:2+context").conditioned(c)[0] for c in (context, context + 1))
    assert not torch.allclose(a(z), b(z))  # with the context, h(x) moves the step


def test_an_iaf_run_made_before_the_options_keeps_the_context_and_the_gated_step():
    """A configuration with flow "iaf:K" and neither key (saved before 2026-12-03) rebuilds the IAF
    it trained (context h(x), gated step), and its state dict loads; new configurations record both keys."""
    from pyrogen.models.registry import build_model

    torch.manual_seed(0)
    old = VAE(latent_dim=D, hidden=(16,), flow="iaf:2", iaf_context=True, iaf_step="gated")
    config = {k: v for k, v in old.config.items() if k not in ("iaf_context", "iaf_step")}
    rebuilt = build_model({"kind": "vae", "model": config})
    assert (rebuilt.flow.iaf_context, rebuilt.flow.iaf_step) == (True, "gated")
    rebuilt.load_state_dict(old.state_dict())
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    z = torch.randn(4, D)
    assert torch.allclose(rebuilt.posterior(x).log_prob(z), old.posterior(x).log_prob(z), atol=1e-5)
    new = build_model({"kind": "vae", "model": VAE(latent_dim=D, hidden=(16,), flow="iaf:2").config})
    assert (new.flow.iaf_context, new.flow.iaf_step) == (False, "affine")


def test_the_guide_site_is_the_flow():
    vae = VAE(latent_dim=D, hidden=(16,), flow="iaf:2")
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3))
    site = pyro.poutine.trace(vae.guide).get_trace(x).nodes["z"]
    assert isinstance(site["fn"], dist.TransformedDistribution) and len(site["fn"].transforms) == 2
    assert site["fn"].batch_shape == (5,) and site["fn"].event_shape == (D,)


@pytest.mark.parametrize("spec", SPECS)
def test_flow_kl_is_monte_carlo_and_meanfield_is_refused(spec):
    vae = VAE(latent_dim=D, hidden=(16,), flow=spec)
    assert kl_method(vae.posterior_family, vae.prior_family, analytic=True) == "monte-carlo"
    assert kl_method(vae.base_family, vae.prior_family, analytic=True) == "analytic"  # the base alone has one
    with pytest.raises(LatentFamilyError, match=f"guide 'normal\\+{spec}' has no closed-form KL"):
        check_guide_family(vae.posterior_family, TraceMeanField_ELBO())
    check_guide_family(vae.posterior_family, Trace_ELBO())


def test_the_trainer_refuses_meanfield_and_reports_monte_carlo_for_a_flow():
    config = default_config(latent_dim=2, hidden=(8,), image_shape=(1, 4, 4), flow="planar:2")
    assert config["model"]["flow"] == "planar:2"
    config["train"]["batch_size"] = 10
    x = torch.bernoulli(torch.full((20, 1, 4, 4), 0.3))
    config["train"]["elbo"] = "meanfield"
    with pytest.raises(LatentFamilyError, match="TraceMeanField_ELBO computes the KL analytically"):
        VAETrainer(VAE(**config["model"]), x, x, config, progress=False)
    config["train"]["elbo"] = "trace"
    assert VAETrainer(VAE(**config["model"]), x, x, config, progress=False).kl_method == "monte-carlo"


def test_bad_flows_are_refused():
    for spec in ("iaf", "maf:2", "planar:0", 3):
        with pytest.raises(LatentFamilyError, match="flow must be 'kind:K'"):
            parse_flow(spec)
    with pytest.raises(LatentFamilyError, match="a flow maps R\\^d to R\\^d, but the guide family 'gamma'"):
        VAE(latent_dim=2, hidden=(8,), prior="gamma", posterior="gamma", flow="iaf:1")
    with pytest.raises(LatentFamilyError, match="but Autoencoder has a guide of its own"):
        Autoencoder(latent_dim=2, hidden=(8,), flow="iaf:1")
    assert parse_flow("radial:10") == ("radial", 10)
    with pytest.raises(LatentFamilyError, match=r"^iaf_step must be one of \['affine', 'gated'\], got 'stable'$"):
        VAE(latent_dim=2, hidden=(8,), flow="iaf:1", iaf_step="stable")
    with pytest.raises(LatentFamilyError, match=r"^iaf_context must be True or False, got 'yes'$"):
        VAE(latent_dim=2, hidden=(8,), flow="iaf:1", iaf_context="yes")
    assert "flow" not in VAE(latent_dim=2, hidden=(8,)).config  # configs of flow-free runs are unchanged


def test_iaf_density_off_its_draws_uses_the_inverse_and_broadcasts():
    """log q(z_i | x_j) for all pairs: its diagonal (by the sequential inverse) equals the cached
    log q(z_i | x_i); planar flows, which have no inverse, say so."""
    flow = _flow("iaf:2")
    base = dist.Normal(torch.randn(4, D), 1.0).to_event(1)
    q = flow(base, torch.randn(4, H))
    z = q.sample()
    pairs = q.log_prob(z.unsqueeze(1))
    assert pairs.shape == (4, 4)
    assert torch.allclose(torch.diagonal(pairs), q.log_prob(z), atol=1e-4)
    planar = _flow("planar:1")(base, torch.randn(4, H))
    planar.log_prob(planar.sample())  # its own draw: from the cache
    with pytest.raises(NotImplementedError, match="known only at its own draws"):
        planar.log_prob(torch.zeros(4, D))


@pytest.mark.parametrize("spec, has_mi", [("iaf:1", True), ("planar:1", False)])
def test_collapse_diagnostics_of_a_flow_vae(spec, has_mi):
    from pyrogen.evaluation.diagnostics import collapse_diagnostics

    vae = VAE(latent_dim=2, hidden=(8,), image_shape=(1, 4, 4), flow=spec)
    x = torch.bernoulli(torch.full((12, 1, 4, 4), 0.3))
    out = collapse_diagnostics(vae.model, vae.guide, x, batch_size=6)
    assert out["kl"] > 0 and math.isfinite(out["kl"]) and math.isfinite(out["mi"]) == has_mi
