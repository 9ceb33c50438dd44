"""Run configurations as plain dicts: the defaults of every kind of run.

A configuration is what ``config.json`` holds and what a checkpoint embeds:
``{"kind", "model", "data", "train", "eval"}`` for the VAE family
(:func:`default_config`) and ``{"kind": "gan", "model", "discriminator",
"data", "train"}`` for GANs (:func:`default_gan_config`). The trainers in
:mod:`pyrogen.training` read them; :mod:`pyrogen.runs` rebuilds models from them.
"""

from pyrogen.distributions import default_binarize
from pyrogen.errors import DataError
from pyrogen.infer.gan_losses import GAN_LOSSES
from pyrogen.models.gan import ARCHITECTURES, NORMS, Generator
from pyrogen.models.registry import MODELS

DEFAULT_TRAIN = {
    "epochs": 10, "batch_size": 100, "lr": 1e-3, "elbo": "trace", "num_particles": 1,
    "seed": 0, "log_every": 20,
    # KL weight λ on "z" (constant, linear warm-up or cyclical), free bits (nats per dimension),
    # aggressive inference-network training (He et al. 2019); see pyrogen.infer.kl_schedule/aggressive
    "kl_schedule": "constant", "kl_weight": 1.0, "kl_warmup_epochs": 10.0, "kl_start": 0.1,
    "kl_cycles": 4, "free_bits": 0.0, "aggressive": False, "aggressive_patience": 5,
    # record the ELBO as one graph and compile it (pyrogen.infer.CompiledLoss): "auto", "on" or "off"
    "compile": "auto",
}  # fmt: skip
DEFAULT_DATA = {"dataset": "fashion-mnist", "root": None, "binarize": "dynamic",
                "train_size": None, "test_size": None}
DEFAULT_EVAL = {"num_samples": 1000, "batch_size": 100}


COMPILE_MODES = ("auto", "on", "off")
AUTO_COMPILE_MIN_STEPS = 3000
"""``--compile auto`` compiles runs of at least this many steps (where a compiler works).

Compiling costs about 4 s on a 2-core CPU and saves about 20% of the eager step
(about 2 ms of the 784-400-50 VAE's 10 ms at batch 100), so it pays after about
2,000 steps; 3,000 (five epochs of Fashion-MNIST at batch 100) leaves a margin."""


def compile_mode(value):
    """``train.compile`` as one of :data:`COMPILE_MODES`; the booleans of older runs' configs mean on and off."""
    if value is True or value is False or value is None:
        return "on" if value else "off"
    if value not in COMPILE_MODES:
        raise DataError(f"train.compile must be one of {COMPILE_MODES} (or a boolean), got {value!r}")
    return value


def default_config(kind="vae", **model):
    """A complete run configuration: ``{"kind", "model", "data", "train", "eval"}``."""
    if kind not in MODELS:
        raise ValueError(f"kind must be one of {sorted(MODELS)}, got {kind!r}")
    return {
        "kind": kind,
        "model": MODELS[kind](**model).config,
        "data": {**DEFAULT_DATA, "binarize": default_binarize(model.get("likelihood", "bernoulli"))},
        "train": dict(DEFAULT_TRAIN),
        "eval": dict(DEFAULT_EVAL),
    }


DEFAULT_GAN_TRAIN = {
    "epochs": 10, "batch_size": 64, "loss": "nonsaturating", "gp_weight": 10.0, "d_steps": 1,
    "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "ema_decay": 0.0, "seed": 0, "log_every": 20,
    "num_fixed": 64, "divergence_threshold": 1e4, "collapse_threshold": 0.5, "overpower_accuracy": 0.98,
}  # fmt: skip
"""Training settings; ``ema_decay`` 0 turns the generator's moving average off (0.999 is usual)."""
DEFAULT_GAN_DATA = {"dataset": "fashion-mnist", "root": None, "train_size": None, "test_size": None}


def default_gan_config(architecture="dcgan", latent_dim=100, hidden=(256, 256), channels=64, norm=None,
                       loss="nonsaturating"):
    """A complete GAN run configuration: ``{"kind": "gan", "model", "discriminator", "data", "train"}``.

    ``norm`` None picks the discriminator's normalisation: none for WGAN-GP (its per-example
    gradient penalty forbids batch norm), else the architecture's default.
    """
    if loss not in GAN_LOSSES:
        raise DataError(f"loss must be one of {sorted(GAN_LOSSES)}, got {loss!r}")
    if architecture not in ARCHITECTURES:
        raise DataError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if norm is None:
        norm = "none" if loss == "wgan-gp" or architecture == "mlp" else "batch"
    if norm not in NORMS:
        raise DataError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss == "wgan-gp" and norm == "batch":
        raise DataError("WGAN-GP's gradient penalty is per example, which batch norm in the discriminator "
                        "breaks; use norm 'none' or 'spectral'")
    model = Generator(latent_dim, architecture=architecture, hidden=tuple(hidden), channels=channels).config
    return {
        "kind": "gan", "model": model,
        "discriminator": {"architecture": architecture, "hidden": list(hidden), "channels": channels, "norm": norm},
        "data": dict(DEFAULT_GAN_DATA), "train": dict(DEFAULT_GAN_TRAIN, loss=loss),
    }  # fmt: skip
