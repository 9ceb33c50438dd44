"""log p(x) as Pyro users expect it: the same seed gives the same figures whether max_plate_nesting is
given or guessed, and the plate over the examples is found by name, never by its size."""

import pyro
import pyro.distributions as dist
import pytest
import torch


def test_guessing_max_plate_nesting_draws_no_random_numbers():
    # Before: the guess ran the pair on the caller's stream, so the same seed gave other figures without it
    from pyrogen.evaluation import elbo, log_likelihood
    from pyrogen.models import VAE

    vae = VAE(latent_dim=2, image_shape=(1, 4, 4), hidden=(8,))
    x = torch.bernoulli(torch.full((3, 1, 4, 4), 0.4, dtype=torch.float32), generator=torch.Generator().manual_seed(1))
    for estimate in (
        lambda **kw: log_likelihood(vae.model, vae.guide, x, num_samples=6, chunk_size=4, **kw),
        lambda **kw: elbo(vae.model, vae.guide, x, num_particles=2, **kw),
    ):
        pyro.set_rng_seed(5)
        given = estimate(max_plate_nesting=1)
        pyro.set_rng_seed(5)
        guessed = estimate()
        assert torch.equal(given, guessed)


def test_a_data_set_is_evaluated_with_one_guess_of_its_plates(monkeypatch):
    """evaluate_dataset guesses max_plate_nesting once for the whole data set (the guess runs the pair, about
    2 ms a batch of 500 for a small VAE), and its figures are those with the nesting given."""
    from pyrogen.evaluation import evaluate_dataset, likelihood
    from pyrogen.models import VAE

    vae = VAE(latent_dim=2, image_shape=(1, 4, 4), hidden=(8,))
    data = torch.bernoulli(torch.full((7, 1, 4, 4), 0.4), generator=torch.Generator().manual_seed(1))
    guess, guesses = likelihood.guess_max_plate_nesting, []
    monkeypatch.setattr(likelihood, "guess_max_plate_nesting", lambda *a, **k: guesses.append(1) or guess(*a, **k))
    pyro.set_rng_seed(5)
    guessed = evaluate_dataset(vae.model, vae.guide, data, batch_size=3, num_samples=4)
    assert len(guesses) == 1  # 3 batches, one guess
    pyro.set_rng_seed(5)
    given = evaluate_dataset(vae.model, vae.guide, data, batch_size=3, num_samples=4, max_plate_nesting=1)
    assert len(guesses) == 1 and guessed == given


def _feature_pair(data_name, features_name, batch):
    """z_b ~ N(0, 1); x_bd ~ N(z_b, 1) for d < 4, the features in a plate of their own of size 4."""

    def model(x):
        with pyro.plate(data_name, x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))
            with pyro.plate(features_name, 4, dim=-2):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x.T)

    def guide(x):
        with pyro.plate(data_name, x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(x.sum(-1) / 5, torch.full(x.shape[:1], 5**-0.5, dtype=x.dtype)))

    x = torch.randn(batch, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = dist.MultivariateNormal(torch.zeros(4, dtype=x.dtype), torch.eye(4, dtype=x.dtype) + 1).log_prob(x)
    return model, guide, x, exact


@pytest.mark.parametrize("data_name, features_name, data_plate", [
    ("data", "features", None),      # by name: the feature plate has the batch's size (4 x 4)
    ("batch", "pixels", None),       # the outermost plate of the observed site
    ("examples", "data", "examples"),  # named by data_plate=, even against a feature plate called "data"
])  # fmt: skip
def test_the_data_plate_is_found_by_name_not_by_size(data_name, features_name, data_plate):
    from pyrogen.evaluation import log_likelihood

    model, guide, x, exact = _feature_pair(data_name, features_name, batch=4)
    torch.testing.assert_close(
        log_likelihood(model, guide, x, num_samples=3, data_plate=data_plate), exact, rtol=0, atol=1e-9
    )


def test_a_data_plate_that_is_not_there_or_not_the_batch_is_one_line():
    from pyrogen.evaluation import log_likelihood

    model, guide, x, _ = _feature_pair("data", "features", batch=4)
    with pytest.raises(
        ValueError,
        match=r"^log p\(x\) per example: the pair has no plate named 'batch' "
        r"\(data_plate=\); its plates: 'data' \(size 4\), 'features' \(size 4\)$",
    ):
        log_likelihood(model, guide, x, num_samples=2, data_plate="batch")
    model, guide, x, _ = _feature_pair("data", "features", batch=3)
    with pytest.raises(
        ValueError,
        match=r"^log p\(x\) per example: the plate over the examples, 'features', has "
        r"size 4 but x holds 3 examples \(x.shape\[0\]\); name the plate over the "
        r"examples with data_plate=$",
    ):
        log_likelihood(model, guide, x, num_samples=2, data_plate="features")
