"""Bad arguments to the Python API: one line naming the argument, not a raw exception from deep inside torch.

Each case raised a torch or Python error (or built a broken model) before these checks.
"""

import numpy as np
import pytest
import torch

from pyrogen.data import DeviceLoader, static_binarize
from pyrogen.errors import DataError
from pyrogen.evaluation.likelihood import log_likelihood
from pyrogen.models import VAE, TwoLayerVAE
from pyrogen.training import FitLoop


@pytest.fixture(scope="module")
def vae():
    return VAE(latent_dim=2, hidden=(8,))


def _fit(step, train):
    class Estimator:
        def step(self, batch):
            return step

    loader = DeviceLoader(torch.rand(4, 1, 2, 2), 2)
    return FitLoop(loader, {"train": train}, progress=False, estimator=Estimator()).fit()


@pytest.mark.parametrize("call, error, message", [
    (lambda vae: TwoLayerVAE(latent_dims=(0, 0)), DataError,
     "latent_dims must be two positive integers (dim z1, dim z2), got (0, 0)"),
    (lambda vae: TwoLayerVAE(latent_dims=(2.5, 2)), DataError,
     "latent_dims must be two positive integers (dim z1, dim z2), got (2.5, 2)"),
    (lambda vae: TwoLayerVAE(latent_dims=(2, 2), hidden=((4,), (0,))), DataError,
     "hidden must be two sequences of positive integer widths (one per layer), got ((4,), (0,))"),
    (lambda vae: vae.sample(2.5), DataError, "num_samples must be a positive integer, got 2.5"),
    (lambda vae: vae.sample(0), DataError, "num_samples must be a positive integer, got 0"),
    (lambda vae: TwoLayerVAE(latent_dims=(2, 2), hidden=((4,), (4,))).sample(2.5), DataError,
     "num_samples must be a positive integer, got 2.5"),
    (lambda vae: static_binarize(torch.full((2, 3), 0.75) * 2), DataError,
     "static_binarize needs probabilities in [0, 1], got values from 1.5 to 1.5 (scale the images to [0, 1] first)"),
    (lambda vae: static_binarize(torch.ones(2, 3, dtype=torch.uint8)), DataError,
     "static_binarize needs a floating-point tensor of probabilities in [0, 1], got torch.uint8"),
    (lambda vae: _fit(torch.tensor(1.0), {"epochs": 1}), DataError,
     "FitLoop needs config['train']['log_every'], a positive integer (steps between reads of the statistics), "
     "got None"),
    (lambda vae: _fit(torch.tensor(1.0), {"log_every": 1}), DataError,
     "FitLoop.fit needs config['train']['epochs'], the epochs to train in total (a non-negative integer), got None"),
    (lambda vae: _fit(torch.tensor(1.0), {"epochs": 1, "log_every": 0}), DataError,
     "FitLoop needs config['train']['log_every'], a positive integer (steps between reads of the statistics), got 0"),
    (lambda vae: _fit("hello", {"epochs": 1, "log_every": 1}), TypeError,
     "the training step returned 'hello' (str) as 'loss'; a step (estimator.step or train_step) must return its "
     "loss as a number or a one-element tensor, or a dict of them"),
    (lambda vae: _fit(torch.ones(3), {"epochs": 1, "log_every": 1}), TypeError,
     "the training step returned a tensor of shape (3,) as 'loss'; a step (estimator.step or train_step) must "
     "return its loss as a number or a one-element tensor, or a dict of them"),
    (lambda vae: log_likelihood(vae.model, vae.guide, torch.zeros(2, 1, 28, 28), num_samples=4, chunk_size=0),
     DataError, "chunk_size must be a positive integer, got 0"),
    (lambda vae: log_likelihood(vae.model, vae.guide, torch.zeros(2, 1, 28, 28), num_samples=2.0), DataError,
     "num_samples must be a positive integer, got 2.0"),
])  # fmt: skip
def test_bad_argument_is_one_line_naming_it(vae, call, error, message):
    with pytest.raises(error) as info:
        call(vae)
    assert str(info.value) == message


def test_numpy_integers_are_sizes():
    # VAE(latent_dim=np.int64(5)) was refused; the configuration keeps Python ints (it is written as JSON)
    vae = VAE(latent_dim=np.int64(5), image_shape=np.array([1, 4, 4]), hidden=[np.int64(8)])
    assert vae.config["latent_dim"] == 5 and type(vae.config["latent_dim"]) is int
    assert vae.config["hidden"] == [8] and type(vae.config["hidden"][0]) is int
    assert vae.sample(np.int64(3)).shape == (3, 1, 4, 4)
    two = TwoLayerVAE(latent_dims=np.array([3, 2]), image_shape=(1, 4, 4), hidden=((np.int64(4),), (4,)))
    assert two.latent_dims == (3, 2) and all(type(d) is int for d in two.config["latent_dims"])
    assert two.sample(np.int32(2)).shape == (2, 1, 4, 4)
    with pytest.raises(DataError, match=r"^latent_dim must be a positive integer, got np.True_$"):
        VAE(latent_dim=np.bool_(True))


def test_a_one_element_loss_tensor_is_a_statistic():
    # a (1,)-shaped loss is read as the number it holds
    metrics = _fit(torch.tensor([2.0]), {"epochs": 1, "log_every": 1})
    assert metrics[0]["loss"] == pytest.approx(1.0)  # 2 nats per batch of 2 examples


def test_numpy_integers_are_sizes_across_the_package():
    import json

    from pyrogen.data import DeviceLoader
    from pyrogen.distributions.families import erlang_family
    from pyrogen.models.conditional import ConditionalVAE
    from pyrogen.models.gan import ConditionalGenerator, Generator

    for model in (
        Generator(latent_dim=np.int64(3), architecture="mlp", hidden=(8,)),
        ConditionalGenerator(num_classes=np.int64(3), latent_dim=np.int32(2), architecture="mlp", hidden=(8,)),
        ConditionalVAE(num_classes=np.int64(3), latent_dim=np.int64(2), hidden=(8,)),
    ):
        json.dumps(model.config)  # NumPy integers would not serialize
        assert type(model.config["latent_dim"]) is int
    loader = DeviceLoader(torch.rand(6, 1, 2, 2), np.int64(4), world_size=np.int64(2), rank=np.int64(1))
    assert loader.batch_size == 4 and len(loader) == 2
    assert erlang_family(np.int64(3)).name == "erlang:3"


def test_a_nan_loss_in_the_fit_loop_is_its_one_line_not_a_warning_per_step():
    # TorchSVI warns of a NaN loss as SVI does; under FitLoop, which stops on it in one line, it does not
    import warnings

    import pyro
    import pyro.distributions as dist

    from pyrogen.errors import TrainingDivergedError
    from pyrogen.infer import ReparamTrace_ELBO, TorchSVI

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.tensor(0.0))

        def model(self, x):
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(0.0, 1.0))
                loc = (z * float("nan"))[:, None, None, None].expand(x.shape)
                pyro.sample("x", dist.Normal(loc, 1.0, validate_args=False).to_event(3), obs=x)

        def guide(self, x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(self.loc, 1.0))

    broken = Broken()
    svi = TorchSVI(broken.model, broken.guide, torch.optim.SGD(broken.parameters(), lr=0.1), ReparamTrace_ELBO())
    loop = FitLoop(
        DeviceLoader(torch.rand(4, 1, 2, 2), 2), {"train": {"epochs": 1, "log_every": 2}}, progress=False, estimator=svi
    )
    with warnings.catch_warnings(record=True) as record, pytest.raises(TrainingDivergedError, match="loss is nan"):
        warnings.simplefilter("always")
        loop.fit()
    assert not [w for w in record if "Encountered NaN" in str(w.message)]


def test_open_run_with_a_device_torch_does_not_know_is_one_line(tmp_path):
    # Before: torch's "Expected one of cpu, cuda, ipu, xpu, ... device type at start of device string" RuntimeError
    from pyrogen.runs import open_run

    with pytest.raises(DataError) as info:
        open_run(tmp_path, device="nonsense")
    assert str(info.value) == "device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (a torch device), got 'nonsense'"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_open_run_on_cuda_without_a_gpu_is_one_line(tmp_path):
    from pyrogen.runs import open_run

    with pytest.raises(
        DataError,
        match=r"^device 'cuda:1' needs a CUDA GPU, and torch finds none here; use 'cpu' "
        r"or 'auto'$",
    ):
        open_run(tmp_path, device="cuda:1")
