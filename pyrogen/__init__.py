"""pyrogen: deep generative models as Pyro model/guide pairs.

VAE-family models and GANs that drop into Pyro code: the generative model
p(z) p(x|z) is a Pyro model with sample sites ``"z"`` and ``"x"``, the inference
network q(z|x) is its guide, and both train with :class:`pyro.infer.SVI` (or
pyrogen's faster loop of the same semantics) or adversarially.
"""

__version__ = "0.1.0"
