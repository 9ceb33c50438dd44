"""pyrogen's errors are one line (issue 27): Pyro's "Trace Shapes" table does not follow a DataError's message."""

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrogen.errors import DataError, PyrogenError, RunDirError, RunFileError
from pyrogen.models import VAE


@pytest.mark.parametrize("run", ["svi-step", "trace"])
def test_a_data_error_raised_inside_a_model_is_one_line(run):
    vae = VAE(latent_dim=2, hidden=(8,))
    x = torch.full((3, 784), 2.0)  # outside a Bernoulli likelihood's support
    with pytest.raises(DataError) as e:
        if run == "svi-step":
            SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO()).step(x)
        else:
            pyro.poutine.trace(vae.model).get_trace(x)
    assert str(e.value) == "x must lie in [0, 1] under a Bernoulli likelihood, got values in [2, 2]"
    assert "Trace Shapes" not in str(e.value) and e.value.args == (str(e.value),)


@pytest.mark.parametrize("kind", [DataError, RunDirError, RunFileError, PyrogenError])
def test_every_pyrogen_error_drops_an_appended_shapes_table(kind):
    error = kind("the message\n          Trace Shapes:        \n           Param Sites:")
    assert str(error) == "the message"
    assert str(kind("two\nlines")) == "two\nlines"  # only Pyro's table is dropped
