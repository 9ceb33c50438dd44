"""Inference algorithms: ELBO estimators and training loops shaped like ``pyro.infer.SVI``."""

from pyrogen.infer.aae import AdversarialAutoencoder
from pyrogen.infer.adversarial import Adversarial
from pyrogen.infer.adversarial_inference import AdversarialInference, EncoderSiteError
from pyrogen.infer.compiled_loss import CompiledLoss, RecordedLoss
from pyrogen.infer.gan_losses import GAN_LOSSES, GANLoss
from pyrogen.infer.iwae import IWAE_ELBO
from pyrogen.infer.reparam_elbo import ReparamTrace_ELBO
from pyrogen.infer.reparam_meanfield_elbo import ReparamTraceMeanField_ELBO
from pyrogen.infer.tc_elbo import TCELBO
from pyrogen.infer.torch_svi import ELBOModule, TorchSVI, module_local

__all__ = [
    "ReparamTrace_ELBO",
    "ReparamTraceMeanField_ELBO",
    "TorchSVI",
    "ELBOModule",
    "module_local",
    "CompiledLoss",
    "RecordedLoss",
    "Adversarial",
    "GANLoss",
    "GAN_LOSSES",
    "AdversarialInference",
    "EncoderSiteError",
    "AdversarialAutoencoder",
    "IWAE_ELBO",
    "TCELBO",
]
