"""Inference algorithms: ELBO estimators and training loops shaped like ``pyro.infer.SVI``."""

from pyrogen.infer.reparam_elbo import ReparamTrace_ELBO
from pyrogen.infer.torch_svi import ELBOModule, TorchSVI, module_local

__all__ = ["ReparamTrace_ELBO", "TorchSVI", "ELBOModule", "module_local"]
