"""The β-TC-VAE objective: the ELBO's KL term split into index-code MI, total correlation and dimension-wise KL.

Chen, Li, Grosse and Duvenaud, "Isolating Sources of Disentanglement in
Variational Autoencoders" (NeurIPS 2018), section 3 and appendix C.1.

With the aggregate posterior :math:`q(z) = \\frac{1}{N}\\sum_{n=1}^N q(z \\mid x_n)`
over a data set of N examples and its marginals :math:`q(z_d)`, the expected
KL term of the ELBO decomposes as

.. math:: \\mathbb{E}_{p(n)}\\mathrm{KL}(q(z|x_n) \\| p(z))
   = \\underbrace{\\mathrm{KL}(q(z, n) \\| q(z)p(n))}_{\\text{index-code MI}}
   + \\underbrace{\\mathrm{KL}(q(z) \\| \\textstyle\\prod_d q(z_d))}_{\\text{total correlation}}
   + \\underbrace{\\textstyle\\sum_d \\mathrm{KL}(q(z_d) \\| p(z_d))}_{\\text{dimension-wise KL}},

for a factorized prior. β-TC-VAE maximises
:math:`\\mathbb{E}[\\log p(x|z)] - \\alpha\\,\\mathrm{MI} - \\beta\\,\\mathrm{TC} - \\gamma\\,\\mathrm{DWKL}`.
:math:`\\log q(z_i)` at the draw :math:`z_i \\sim q(z|x_i)` of each of the M
examples of a minibatch is estimated by minibatch-weighted sampling (MWS),

.. math:: \\log \\hat q(z_i) = \\log \\sum_{j=1}^M q(z_i \\mid x_j) - \\log(NM), \\qquad
   \\log \\hat q(z_{i,d}) = \\log \\sum_{j=1}^M q(z_{i,d} \\mid x_j) - \\log(NM).
"""

import math

import torch
from pyro.distributions import Independent
from pyro.infer import ELBO

from pyrogen.infer.reparam_elbo import ReparamTrace_ELBO, scored_sites, site_log_prob, trace_pair


class TCELBO(ELBO):
    """The β-TC-VAE objective for a guide whose latent site ``site`` has independent coordinates.

    For each example i of the minibatch (one draw :math:`z_i \\sim q(z|x_i)`),

    .. math:: \\widehat{\\mathrm{MI}}_i = \\log q(z_i|x_i) - \\log\\hat q(z_i), \\quad
       \\widehat{\\mathrm{TC}}_i = \\log\\hat q(z_i) - \\textstyle\\sum_d \\log\\hat q(z_{i,d}), \\quad
       \\widehat{\\mathrm{DW}}_i = \\textstyle\\sum_d \\log\\hat q(z_{i,d}) - \\log p(z_i),

    whose sum is :math:`\\log q(z_i|x_i) - \\log p(z_i)`, the ELBO's one-draw KL
    estimate, exactly. The objective of the example is its ELBO with that KL
    estimate replaced by :math:`\\alpha\\widehat{\\mathrm{MI}}_i + \\beta\\widehat{\\mathrm{TC}}_i
    + \\gamma\\widehat{\\mathrm{DW}}_i`, times the site's scale (the data plate's N/M
    subsample scale and any KL weight); every other site enters as in
    :class:`~pyrogen.infer.ReparamTrace_ELBO`. With :math:`\\alpha=\\beta=\\gamma=1`
    the loss is Trace_ELBO's, draw for draw. The loss is in nats per batch.

    MWS is biased: :math:`\\log\\hat q(z_i)` is low by between :math:`\\log M`
    (posteriors of different examples far apart) and :math:`\\log N` (all
    posteriors equal), so :math:`\\widehat{\\mathrm{MI}}` is high by as much and
    the individual terms carry such offsets (for M equal posteriors
    :math:`\\widehat{\\mathrm{MI}} = \\log N` and :math:`\\widehat{\\mathrm{TC}} = (D-1)\\log N`,
    where the true values are 0); their sum does not. Compare the terms across
    runs with the same N and M.

    :param float beta: β, the weight of the total correlation.
    :param int dataset_size: N; by default the full size of the data plate
        (``pyro.plate("data", N, subsample_size=M)``), which is the minibatch
        size when the model is given only the minibatch, so pass N then.
    :param float alpha: α, the weight of the index-code mutual information.
    :param float gamma: γ, the weight of the dimension-wise KL.
    :param str site: the latent site decomposed; its guide distribution must be
        ``Independent`` over one event dimension with batch shape ``(M,)``.
    :param int num_particles: draws averaged per step.
    """

    def __init__(self, beta=1.0, dataset_size=None, alpha=1.0, gamma=1.0, site="z", num_particles=1, data_plate="data"):
        super().__init__(num_particles=num_particles)
        if dataset_size is not None and dataset_size < 1:
            raise ValueError(f"dataset_size must be positive, got {dataset_size!r}")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.dataset_size, self.site, self.data_plate = dataset_size, site, data_plate

    def _get_trace(self, model, guide, args, kwargs):
        return trace_pair(model, guide, args, kwargs)

    def _terms(self, model, guide, args, kwargs):
        """One draw: the rest of the ELBO (a scalar), the site's scale and the per-example MI, TC, DW (M,)."""
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        if self.site not in guide_trace.nodes or self.site not in model_trace.nodes:
            raise ValueError(f"TCELBO decomposes site {self.site!r}, which the model or guide lacks")
        q_site, p_site = guide_trace.nodes[self.site], model_trace.nodes[self.site]
        rest = 0.0
        for name, site in scored_sites(model_trace):
            if name != self.site:
                rest = rest + site_log_prob(site).sum()
        for name, site in scored_sites(guide_trace, observed=False):
            if not site["fn"].has_rsample:
                raise ValueError(f"guide site {name!r} is not reparameterized; TCELBO's gradients are pathwise")
            if name != self.site:
                rest = rest - site_log_prob(site).sum()
        q, z = q_site["fn"], q_site["value"]
        if not isinstance(q, Independent) or q.reinterpreted_batch_ndims != 1 or len(q.batch_shape) != 1:
            raise ValueError(
                f"TCELBO needs q at site {self.site!r} to be Independent over one event dimension with batch "
                f"shape (M,) (one draw per example), got {type(q).__name__} with batch shape "
                f"{tuple(q.batch_shape)}"
            )
        batch = q.batch_shape[0]
        size = self.dataset_size
        if size is None:
            frames = [f for f in q_site["cond_indep_stack"] if f.name == self.data_plate]
            size = frames[0].full_size if frames and frames[0].full_size is not None else batch
        log_norm = math.log(size * batch)
        pairs = q.base_dist.log_prob(z.unsqueeze(-2))  # (M_i, M_j, D): log q(z_{i,d} | x_j)
        log_qz = torch.logsumexp(pairs.sum(-1), dim=-1) - log_norm
        log_qz_dims = (torch.logsumexp(pairs, dim=-2) - log_norm).sum(-1)
        log_qzx = q.log_prob(z)
        log_pz = p_site["fn"].log_prob(z)
        terms = {
            "mi": log_qzx - log_qz,
            "tc": log_qz - log_qz_dims,
            "dimwise_kl": log_qz_dims - log_pz,
            "kl": log_qzx - log_pz,
        }
        return rest, q_site["scale"], terms

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Minus the β-TC objective of the batch (nats), a scalar that gradients flow through."""
        total = 0.0
        for _ in range(self.num_particles):
            rest, scale, t = self._terms(model, guide, args, kwargs)
            penalty = self.alpha * t["mi"] + self.beta * t["tc"] + self.gamma * t["dimwise_kl"]
            total = total + rest - (scale * penalty).sum()
        return -total / self.num_particles

    # the objective as a float, and with its gradients, from differentiable_loss
    loss = ReparamTrace_ELBO.loss
    loss_and_grads = ReparamTrace_ELBO.loss_and_grads

    @torch.no_grad()
    def decomposition(self, model, guide, *args, **kwargs):
        """The MWS estimates of one draw, averaged over the batch's examples, for logging.

        :returns: dict of floats in nats per example: ``"mi"`` (index-code mutual
            information), ``"tc"`` (total correlation), ``"dimwise_kl"`` and
            ``"kl"``, the one-draw estimate of KL(q(z|x) || p(z)), which is
            ``mi + tc + dimwise_kl`` up to float rounding. Unscaled (no N/M, no KL weight).
        """
        _, _, terms = self._terms(model, guide, args, kwargs)
        return {name: value.mean().item() for name, value in terms.items()}


__all__ = ["TCELBO"]
