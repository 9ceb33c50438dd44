"""Learned priors: the VampPrior.

Tomczak and Welling, "VAE with a VampPrior" (AISTATS 2018): the prior that
maximises the ELBO averaged over the data is the aggregate posterior
:math:`\\frac1N \\sum_n q_\\phi(z \\mid x_n)`; the VampPrior replaces the N
training images by K learned pseudo-inputs :math:`u_k`,

.. math:: p_\\lambda(z) = \\frac{1}{K} \\sum_{k=1}^{K} q_\\phi(z \\mid u_k),

a mixture of the guide's own distribution (same encoder, same family) at the
pseudo-inputs (K = 500 in the paper). It is a :class:`pyro.distributions.MixtureSameFamily`
with uniform weights, whose :meth:`log_prob` is
:math:`\\operatorname{logsumexp}_k \\log q_\\phi(z \\mid u_k) - \\log K`. KL(q || p)
has no closed form, so the ELBO estimates it by Monte Carlo.
"""

import torch
from pyro import distributions as dist
from torch import nn


class VampPrior(nn.Module):
    """K pseudo-inputs and the mixture of the guide's distribution at them.

    The pseudo-inputs are stored unconstrained and pushed through a sigmoid,
    so each pseudo-image lies in (0, 1) like the data (the paper clips with a
    hard tanh); they start near 0.5 unless :meth:`init_from` sets them from data.

    :param int num_components: K.
    :param tuple image_shape: ``(C, H, W)`` of one pseudo-input.
    """

    def __init__(self, num_components, image_shape):
        super().__init__()
        if num_components < 1:
            raise ValueError(f"a VampPrior needs K >= 1 pseudo-inputs, got {num_components}")
        self.num_components = num_components
        self.pseudo_logits = nn.Parameter(0.01 * torch.randn((num_components,) + tuple(image_shape)))

    def pseudo_inputs(self):
        """The K pseudo-images :math:`u_k`, shape ``(K, C, H, W)``, in (0, 1)."""
        return torch.sigmoid(self.pseudo_logits)

    @torch.no_grad()
    def init_from(self, images, eps=1e-3):
        """Set the pseudo-inputs to the first K ``images`` (values in [0, 1], clipped to ``[eps, 1 - eps]``)."""
        u = images[: self.num_components].reshape(self.pseudo_logits.shape).clamp(eps, 1 - eps)
        self.pseudo_logits.copy_(torch.logit(u))

    def distribution(self, encoder, family):
        """:math:`p(z) = \\frac1K \\sum_k q(z \\mid u_k)`, event shape ``(latent_dim,)``, batch shape ``()``.

        :param encoder: maps images ``(K, C, H, W)`` to the family's parameters ``(K, ...)``.
        :param family: the guide's :class:`~pyrogen.distributions.LatentFamily`.
        """
        components = family(**encoder(self.pseudo_inputs()))
        weights = dist.Categorical(logits=self.pseudo_logits.new_zeros(self.num_components))
        return dist.MixtureSameFamily(weights, components)
