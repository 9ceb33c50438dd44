"""Adversarial losses: the game a discriminator D and a generator G play.

Every loss works on the discriminator's raw scores :math:`s = D(x)` (one real
number per example: a logit for the logistic losses, a critic value for the
Wasserstein and hinge losses) and has three parts:

* :meth:`GANLoss.discriminator_loss` ``(real_scores, fake_scores)``: what the
  discriminator minimises;
* :meth:`GANLoss.generator_loss` ``(fake_scores)``: what the generator minimises;
* :meth:`GANLoss.penalty` ``(discriminator, real, fake)``: a regulariser added
  to the discriminator's loss (zero except for the gradient penalty).

All expectations are means over the minibatch, so every loss is per example.
Working with logits and ``softplus`` (:math:`-\\log \\sigma(s) = \\operatorname{softplus}(-s)`)
instead of probabilities avoids the saturated sigmoid, as
:class:`torch.nn.BCEWithLogitsLoss` does.

:meth:`GANLoss.score_mean` turns scores into the "mean D(x)" a user expects to
see (a probability for the logistic losses, the raw score otherwise), and
:attr:`GANLoss.threshold` is the score above which the discriminator calls an
example real (for its accuracy).
"""

import torch
import torch.nn.functional as F

from pyrogen.errors import DataError


def _check_scores(scores, name):
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise DataError(
            f"{name} must be a floating-point tensor of discriminator scores, got "
            f"{type(scores).__name__ if not isinstance(scores, torch.Tensor) else scores.dtype}"
        )
    if scores.dim() == 0 or scores.shape[0] == 0:
        raise DataError(f"{name} must hold one score per example, shape (B,) or (B, 1), got {tuple(scores.shape)}")
    if scores.dim() > 1 and scores[0].numel() != 1:
        raise DataError(f"{name} must hold one score per example, shape (B,) or (B, 1), got {tuple(scores.shape)}")
    return scores.reshape(scores.shape[0])


class GANLoss:
    """Base class of adversarial losses (see the module docs for the interface)."""

    name = None
    threshold = 0.0
    """Scores above this count as "real" when the discriminator's accuracy is measured."""

    def discriminator_loss(self, real_scores, fake_scores):
        raise NotImplementedError

    def generator_loss(self, fake_scores):
        raise NotImplementedError

    def penalty(self, discriminator, real, fake):
        """A regulariser added to the discriminator's loss; ``None`` when there is none."""
        return None

    @property
    def has_penalty(self):
        """Whether :meth:`penalty` can add anything: a subclass that overrides it has one (the only test
        of "has a penalty" the adversarial estimators make; it decides whether their evaluation enables
        gradients, which a gradient penalty needs)."""
        return type(self).penalty is not GANLoss.penalty

    def score_mean(self, scores):
        """The mean of D over a batch in the loss's own units (a probability or a raw score)."""
        return scores.mean()

    def check(self, real_scores, fake_scores=None):
        """Scores reshaped to ``(B,)``; raises :class:`~pyrogen.errors.DataError` for anything else."""
        real_scores = _check_scores(real_scores, "real_scores")
        return real_scores if fake_scores is None else (real_scores, _check_scores(fake_scores, "fake_scores"))

    def __repr__(self):
        return f"{type(self).__name__}()"


class MinimaxLoss(GANLoss):
    """The original game of Goodfellow et al. (2014), exactly the value function

    .. math:: V(D, G) = \\mathbb{E}_{x \\sim p_\\text{data}}[\\log D(x)]
       + \\mathbb{E}_{z \\sim p(z)}[\\log(1 - D(G(z)))], \\qquad D(x) = \\sigma(s(x)).

    The discriminator maximises V (its loss is :math:`-V`), the generator minimises
    V (its loss is the second term, :math:`\\mathbb{E}_z[\\log(1 - D(G(z)))]`,
    which saturates when D rejects the samples early in training). For a fixed
    G the optimal discriminator is :math:`D^*(x) = p_\\text{data}(x) / (p_\\text{data}(x) + p_g(x))`.
    """

    name = "minimax"

    def value(self, real_scores, fake_scores):
        """:math:`V(D, G)` itself (nats per example)."""
        real_scores, fake_scores = self.check(real_scores, fake_scores)
        return -F.softplus(-real_scores).mean() - F.softplus(fake_scores).mean()

    def discriminator_loss(self, real_scores, fake_scores):
        """:math:`-V(D, G) = \\mathbb{E}[\\operatorname{softplus}(-s(x))]
        + \\mathbb{E}[\\operatorname{softplus}(s(G(z)))]`."""
        return -self.value(real_scores, fake_scores)

    def generator_loss(self, fake_scores):
        """:math:`\\mathbb{E}_z[\\log(1 - D(G(z)))] = -\\mathbb{E}_z[\\operatorname{softplus}(s(G(z)))]`."""
        fake_scores = _check_scores(fake_scores, "fake_scores")
        return -F.softplus(fake_scores).mean()

    def score_mean(self, scores):
        """Mean probability :math:`\\sigma(s)` that an example is real."""
        return torch.sigmoid(scores).mean()


class NonSaturatingLoss(MinimaxLoss):
    """The non-saturating game (Goodfellow et al. 2014, section 3): the discriminator's loss is
    :math:`-V(D, G)` as in :class:`MinimaxLoss`; the generator minimises

    .. math:: -\\mathbb{E}_{z \\sim p(z)}[\\log D(G(z))] = \\mathbb{E}_z[\\operatorname{softplus}(-s(G(z)))],

    which has the same fixed point but strong gradients where D rejects the samples.
    The default of DCGAN (Radford et al. 2016).
    """

    name = "nonsaturating"

    def generator_loss(self, fake_scores):
        fake_scores = _check_scores(fake_scores, "fake_scores")
        return F.softplus(-fake_scores).mean()


class WassersteinGPLoss(GANLoss):
    """Wasserstein GAN with gradient penalty (Arjovsky et al. 2017; Gulrajani et al. 2017).

    The critic :math:`D` (no sigmoid) minimises

    .. math:: \\mathbb{E}_z[D(G(z))] - \\mathbb{E}_x[D(x)]
       + \\lambda\\, \\mathbb{E}_{\\hat x}\\big[(\\lVert \\nabla_{\\hat x} D(\\hat x) \\rVert_2 - 1)^2\\big],
       \\qquad \\hat x = \\epsilon x + (1 - \\epsilon) G(z),\\ \\epsilon \\sim U[0, 1],

    with one :math:`\\epsilon` and one gradient norm per example (the norm of that
    example's gradient over all its pixels, not one norm over the batch); the
    generator minimises :math:`-\\mathbb{E}_z[D(G(z))]`. Gulrajani et al. use
    :math:`\\lambda = 10` and five critic steps per generator step.

    :param float gp_weight: :math:`\\lambda`.
    """

    name = "wgan-gp"

    def __init__(self, gp_weight=10.0):
        if not gp_weight >= 0:
            raise DataError(f"gp_weight must be >= 0, got {gp_weight!r}")
        self.gp_weight = float(gp_weight)

    def discriminator_loss(self, real_scores, fake_scores):
        """:math:`\\mathbb{E}[D(G(z))] - \\mathbb{E}[D(x)]` (the penalty comes from :meth:`penalty`)."""
        real_scores, fake_scores = self.check(real_scores, fake_scores)
        return fake_scores.mean() - real_scores.mean()

    def generator_loss(self, fake_scores):
        """:math:`-\\mathbb{E}_z[D(G(z))]`."""
        return -_check_scores(fake_scores, "fake_scores").mean()

    def penalty(self, discriminator, real, fake, epsilon=None):
        """:math:`\\lambda\\, \\mathbb{E}[(\\lVert \\nabla_{\\hat x} D(\\hat x) \\rVert_2 - 1)^2]`, one norm per
        example.

        :param discriminator: the critic, mapping ``(B, ...)`` to ``(B,)`` or ``(B, 1)`` scores.
        :param torch.Tensor real: real examples ``(B, ...)``.
        :param torch.Tensor fake: generated examples of the same shape.
        :param torch.Tensor epsilon: interpolation weights ``(B,)`` (default: drawn from U[0, 1]).
        """
        if self.gp_weight == 0:
            return None
        if real.shape != fake.shape:
            raise DataError(
                f"real and fake batches must have the same shape for the gradient penalty, "
                f"got {tuple(real.shape)} and {tuple(fake.shape)}"
            )
        if epsilon is None:
            epsilon = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
        epsilon = epsilon.reshape((-1,) + (1,) * (real.dim() - 1))
        interpolates = (epsilon * real.detach() + (1 - epsilon) * fake.detach()).requires_grad_(True)
        scores = discriminator(interpolates)
        (grad,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
        norms = grad.flatten(1).norm(2, dim=1)
        return self.gp_weight * (norms - 1).square().mean()

    @property
    def has_penalty(self):
        """A penalty of weight 0 is none."""
        return self.gp_weight > 0

    def __repr__(self):
        return f"{type(self).__name__}(gp_weight={self.gp_weight})"


class HingeLoss(GANLoss):
    """The hinge game (Lim and Ye 2017; Miyato et al. 2018, SN-GAN): the discriminator minimises

    .. math:: \\mathbb{E}_x[\\max(0, 1 - D(x))] + \\mathbb{E}_z[\\max(0, 1 + D(G(z)))],

    the generator minimises :math:`-\\mathbb{E}_z[D(G(z))]`.
    """

    name = "hinge"

    def discriminator_loss(self, real_scores, fake_scores):
        real_scores, fake_scores = self.check(real_scores, fake_scores)
        return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()

    def generator_loss(self, fake_scores):
        return -_check_scores(fake_scores, "fake_scores").mean()


class LeastSquaresLoss(GANLoss):
    """Least squares GAN (Mao et al. 2017) with targets a = 0 (fake), b = 1 (real), c = 1:

    .. math:: L_D = \\tfrac12 \\mathbb{E}_x[(D(x) - 1)^2] + \\tfrac12 \\mathbb{E}_z[D(G(z))^2],
       \\qquad L_G = \\tfrac12 \\mathbb{E}_z[(D(G(z)) - 1)^2].

    A score above 1/2 counts as "real".
    """

    name = "least-squares"
    threshold = 0.5

    def discriminator_loss(self, real_scores, fake_scores):
        real_scores, fake_scores = self.check(real_scores, fake_scores)
        return 0.5 * (real_scores - 1).square().mean() + 0.5 * fake_scores.square().mean()

    def generator_loss(self, fake_scores):
        return 0.5 * (_check_scores(fake_scores, "fake_scores") - 1).square().mean()


GAN_LOSSES = {cls.name: cls for cls in (MinimaxLoss, NonSaturatingLoss, WassersteinGPLoss, HingeLoss, LeastSquaresLoss)}
"""Losses by name: ``"minimax"``, ``"nonsaturating"``, ``"wgan-gp"``, ``"hinge"``, ``"least-squares"``."""


def get_gan_loss(loss, **options):
    """A loss by name (see :data:`GAN_LOSSES`) or a :class:`GANLoss` instance, returned unchanged."""
    if isinstance(loss, GANLoss):
        return loss
    if loss not in GAN_LOSSES:
        raise DataError(
            f"unknown GAN loss {loss!r}; expected one of {', '.join(sorted(GAN_LOSSES))} "
            "or a pyrogen.infer.gan_losses.GANLoss"
        )
    return GAN_LOSSES[loss](**options)
