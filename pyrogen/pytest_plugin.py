"""pyrogen's pytest plugin: fixtures for testing your own model/guide pairs.

Installed with pyrogen and loaded by pytest automatically (entry point
``pytest11``); disable it with ``pytest -p no:pyrogen``. It adds fixtures and
nothing else: none is autouse, so it changes no test that does not ask for it.

``fresh_pyro``
    An empty param store, seed 0 (``pyro.set_rng_seed``) and Pyro's validation
    on, for the duration of the test.
``tiny_images``
    A fixed batch of 8 binary 1x28x28 images (a float tensor of 0s and 1s,
    the same in every run), enough for :func:`pyrogen.testing.check_model_guide`.
``check_model_guide``
    :func:`pyrogen.testing.check_model_guide`, for tests that prefer fixtures to imports.

Example::

    def test_my_vae(fresh_pyro, tiny_images, check_model_guide):
        vae = MyVAE(latent_dim=2)
        check_model_guide(vae.model, vae.guide, tiny_images)
"""

import pyro
import pytest
import torch

from pyrogen import testing


@pytest.fixture
def fresh_pyro():
    """An empty param store, seed 0 and validation on; the param store is cleared after."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()


@pytest.fixture
def tiny_images():
    """8 binary images ``(8, 1, 28, 28)``: light blobs on a dark background, the same every run."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.arange(28.0).view(28, 1)
    cols = torch.arange(28.0).view(1, 28)
    centres = torch.randint(8, 20, (8, 2), generator=generator).float()
    dist2 = (rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2
    probs = torch.sigmoid(3.0 - dist2 / 12.0)
    return torch.bernoulli(probs, generator=generator).unsqueeze(1)


@pytest.fixture
def check_model_guide():
    """:func:`pyrogen.testing.check_model_guide`."""
    return testing.check_model_guide
