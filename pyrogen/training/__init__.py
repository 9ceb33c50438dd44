"""Training: one fit loop (:mod:`pyrogen.training.loop`) and the trainers that run on it.

:class:`~pyrogen.training.loop.FitLoop` owns epochs, progress, metrics,
checkpoints, exact resume, the divergence stop and rank-zero writing;
:class:`~pyrogen.training.vae.VAETrainer` (SVI for the VAE family) and
:class:`~pyrogen.training.gan.GANTrainer` (the adversarial game) say what
one step is and what an epoch reports.
"""

from pyrogen.config import (
    DEFAULT_DATA,
    DEFAULT_EVAL,
    DEFAULT_GAN_DATA,
    DEFAULT_GAN_TRAIN,
    DEFAULT_TRAIN,
    default_config,
    default_gan_config,
)
from pyrogen.models.registry import MODELS
from pyrogen.rundirs import load_data, load_gan_data, load_generator, load_model, resolve_device
from pyrogen.training.gan import GANTrainer, GeneratorEMA, build_gan_trainer, resume_gan_trainer
from pyrogen.training.loop import FitLoop
from pyrogen.training.vae import ELBOS, VAETrainer, build_trainer, resume_trainer

__all__ = [
    "FitLoop", "VAETrainer", "GANTrainer", "GeneratorEMA",
    "build_trainer", "resume_trainer", "build_gan_trainer", "resume_gan_trainer",
    "default_config", "default_gan_config", "DEFAULT_TRAIN", "DEFAULT_DATA", "DEFAULT_EVAL",
    "DEFAULT_GAN_TRAIN", "DEFAULT_GAN_DATA", "MODELS", "ELBOS",
    "load_model", "load_generator", "load_data", "load_gan_data", "resolve_device",
]  # fmt: skip
