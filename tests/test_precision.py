"""Mixed precision (pyrogen.precision, TorchSVI's precision, the fit loop's autocast).

"32" is the float32 step bit for bit; "bf16" and "fp16" train a VAE on Fashion-MNIST
to within a stated tolerance of float32's test ELBO; "fp16" without a gradient
scaler in the step is refused.
"""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyrogen.data import DeviceLoader, static_binarize
from pyrogen.errors import DataError
from pyrogen.evaluation import evaluate_dataset
from pyrogen.infer import ReparamTraceMeanField_ELBO, TorchSVI
from pyrogen.models import VAE
from pyrogen.precision import Precision, check_precision
from pyrogen.training import FitLoop
from tests.conftest import requires_fashion_mnist

ELBO_TOLERANCE = 1.0
"""nats per image: |test ELBO (bf16 or fp16) - test ELBO (float32)| after 80 steps from the same seed
(measured 0.1 for both on this 784-200-10 VAE after 60 steps; the runs' ELBOs are about -314)."""


def _train(images, precision, epochs=3, with_key=True):
    pyro.set_rng_seed(0)
    vae = VAE(latent_dim=10, hidden=(200,))
    optim = torch.optim.Adam(vae.parameters(), lr=1e-3)
    svi = TorchSVI(vae.model, vae.guide, optim, ReparamTraceMeanField_ELBO(), precision=precision)
    loader = DeviceLoader(images, 100, binarize="dynamic", seed=1)
    train = {"epochs": epochs, "log_every": 10, **({"precision": precision} if with_key else {})}
    loop = FitLoop(loader, {"train": train}, estimator=svi, progress=False)
    loop.handles_precision = True
    loop.fit()
    return vae, loop


def _test_elbo(vae, test):
    with pyro.validation_enabled(False):
        return evaluate_dataset(vae.model, vae.guide, test, batch_size=500)["elbo"]


@pytest.fixture(scope="module")
def data(fashion_mnist_small):
    train, test = fashion_mnist_small
    return train.images, static_binarize(test.images, seed=1)


@requires_fashion_mnist
def test_32_is_the_float32_step_bit_for_bit(data, one_thread):
    plain, _ = _train(data[0], None, epochs=1, with_key=False)
    named, loop = _train(data[0], "32", epochs=1)
    assert not loop.precision.enabled and "precision" not in loop.state_dict()  # checkpoints as before
    for (name, a), (_, b) in zip(plain.state_dict().items(), named.state_dict().items()):
        assert torch.equal(a, b), name


@requires_fashion_mnist
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_to_float32s_elbo(data, precision, one_thread):
    train, test = data
    vae, loop = _train(train, precision)
    dtypes = []
    hook = vae.decoder.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    loop.fit(4)  # one more epoch, watching what the decoder computes in
    hook.remove()
    vae32, _ = _train(train, "32", epochs=4)
    expected = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert expected in dtypes  # autocast did act: the step is not float32 in disguise
    mixed, reference = _test_elbo(vae, test), _test_elbo(vae32, test)
    assert mixed != reference
    assert abs(mixed - reference) < ELBO_TOLERANCE, (mixed, reference)
    assert all(p.dtype == torch.float32 for p in vae.parameters())  # parameters stay float32
    if precision == "fp16":
        assert set(loop.state_dict()["precision"]["scaler"]) >= {"scale", "_growth_tracker"}


def test_fp16_needs_a_scaler_in_the_step():
    vae = VAE(latent_dim=2, hidden=(8,))
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    loader = DeviceLoader((torch.rand(20, 1, 28, 28) > 0.5).float(), 10)
    loop = FitLoop(loader, {"train": {"epochs": 1, "log_every": 1, "precision": "fp16"}}, estimator=svi, progress=False)
    with pytest.raises(
        DataError,
        match=r"^precision 'fp16' needs a gradient scaler in the training step, which "
        r"FitLoop does not have; use 'bf16' \(float32's range, no scaler needed\)$",
    ):
        loop.fit()


def test_bf16_under_the_loops_autocast_for_any_estimator():
    """A step that does not handle precision (Pyro's own SVI here) runs under the loop's autocast."""
    vae = VAE(latent_dim=2, hidden=(8,))
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    loader = DeviceLoader((torch.rand(20, 1, 28, 28) > 0.5).float(), 10)
    loop = FitLoop(loader, {"train": {"epochs": 1, "log_every": 1, "precision": "bf16"}}, estimator=svi, progress=False)
    dtypes = []
    vae.decoder.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    loop.fit()
    assert dtypes and set(dtypes) == {torch.bfloat16}


def test_precision_names():
    assert check_precision(32) == "32"
    with pytest.raises(DataError, match=r"^precision must be one of \['32', 'bf16', 'fp16'\], got 'fp8'$"):
        check_precision("fp8")
    with pytest.raises(
        ValueError,
        match=r"^compile='record' records the float32 step; mixed precision \(bf16\) "
        r"runs eagerly: give compile='off'$",
    ):
        vae = VAE(latent_dim=2, hidden=(8,))
        TorchSVI(
            vae.model, vae.guide, torch.optim.Adam(vae.parameters()), Trace_ELBO(), compile="record", precision="bf16"
        )


def test_a_checkpoint_of_another_precision_is_refused():
    state = Precision("bf16").state_dict()
    with pytest.raises(DataError, match=r"^the checkpoint was trained with precision 'bf16', not 'fp16'$"):
        Precision("fp16").load_state_dict(state)


def test_gan_trains_in_bf16_under_the_loops_autocast(one_thread):
    """The adversarial trainers take bf16 through the loop's autocast: 16-bit products, finite losses."""
    from pyrogen.training.gan import build_gan_trainer, default_gan_config

    config = default_gan_config("mlp", latent_dim=8, hidden=(32,))
    config["train"].update(epochs=1, batch_size=25, log_every=2, num_fixed=16, precision="bf16")
    g = torch.Generator().manual_seed(0)
    data = torch.rand(100, 1, 28, 28, generator=g), torch.rand(40, 1, 28, 28, generator=g)
    trainer = build_gan_trainer(config, device="cpu", progress=False, data=data)
    dtypes = []
    for m in trainer.generator.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    row = trainer.fit()[0]
    assert torch.bfloat16 in dtypes
    assert all(math.isfinite(row[k]) for k in ("loss_d", "loss_g"))
    assert all(p.dtype == torch.float32 for p in trainer.generator.parameters())
