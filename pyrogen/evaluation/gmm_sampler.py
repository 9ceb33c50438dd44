"""Samples from an autoencoder: a Gaussian mixture fitted to its training codes.

Ghosh, Sajjadi, Vergari, Black and Schölkopf, "From Variational to
Deterministic Autoencoders" (ICLR 2020), section 4: an autoencoder's code
distribution need not match any prior, so decoding draws from
:math:`\\mathcal{N}(0, I)` gives poor images; fitting a density to the codes
of the training set *ex post* and decoding draws from it turns any
autoencoder into a generative model. The paper uses a Gaussian mixture with 10
components,

.. math:: \\hat q(z) = \\sum_{k=1}^{K} \\pi_k\\, \\mathcal{N}(z; \\mu_k, \\Sigma_k),

fitted here by expectation-maximisation (Dempster, Laird and Rubin 1977) in
float64 torch: k-means++ seeding (Arthur and Vassilvitskii 2007) from a fixed
seed and a few k-means iterations, then E-steps (responsibilities
:math:`r_{nk} \\propto \\pi_k \\mathcal{N}(z_n; \\mu_k, \\Sigma_k)`)
and M-steps (:math:`\\pi_k = N_k / N`, :math:`\\mu_k`, :math:`\\Sigma_k` the
responsibility-weighted mean and covariance, plus ``reg`` on the diagonal)
until the mean log-likelihood (nats per code) rises by less than ``tol``.
Each EM iteration cannot lower the log-likelihood; the history is kept in
:attr:`GaussianMixture.log_likelihoods`.

For a :class:`~pyrogen.models.autoencoder.Autoencoder` the code is
:math:`\\mu_\\phi(x)`; for a :class:`~pyrogen.models.VAE` it is the mean of
q(z|x) (a draw where q has no mean, e.g. a flow guide).

Example::

    >>> import torch
    >>> from pyrogen.models.autoencoder import Autoencoder
    >>> from pyrogen.evaluation.gmm_sampler import fit_code_gmm
    >>> ae = Autoencoder(latent_dim=2, hidden=(16,))
    >>> sampler = fit_code_gmm(ae, torch.rand(60, 1, 28, 28), n_components=3)
    >>> sampler.sample(5).shape, sampler.sample_images(5).shape
    (torch.Size([5, 2]), torch.Size([5, 1, 28, 28]))
"""

import torch
from pyro import distributions as dist

from pyrogen.data import static_binarize
from pyrogen.errors import DataError, PyrogenError
from pyrogen.random_streams import stream_seed

COVARIANCES = ("full", "diag")
"""Covariance structures :func:`fit_gmm` fits: full matrices or diagonal ones."""


class GaussianMixture:
    """A fitted mixture of K Gaussians in d dimensions (float64 parameters).

    :ivar torch.Tensor weights: :math:`\\pi`, shape ``(K,)``.
    :ivar torch.Tensor means: :math:`\\mu_k`, shape ``(K, d)``.
    :ivar torch.Tensor covariances: :math:`\\Sigma_k`, shape ``(K, d, d)`` (diagonal when fitted with ``"diag"``).
    :ivar list log_likelihoods: mean log-likelihood of the fitted codes after
        each EM iteration, nats per code (non-decreasing).
    """

    def __init__(self, weights, means, covariances, log_likelihoods=()):
        self.weights, self.means, self.covariances = weights, means, covariances
        self.log_likelihoods = list(log_likelihoods)

    @property
    def n_components(self):
        return self.weights.shape[0]

    def distribution(self, dtype=torch.float32):
        """The mixture as a :class:`pyro.distributions.MixtureSameFamily` of ``MultivariateNormal``."""
        return dist.MixtureSameFamily(
            dist.Categorical(probs=self.weights.to(dtype)),
            dist.MultivariateNormal(self.means.to(dtype), covariance_matrix=self.covariances.to(dtype)),
        )

    def log_prob(self, z):
        """:math:`\\log \\hat q(z)` for codes ``(..., d)``, in nats."""
        return _log_joint(z.double(), self.weights, self.means, self.covariances).logsumexp(-1).to(z.dtype)

    def sample(self, n, generator=None, return_components=False, dtype=torch.float32):
        """``n`` draws ``(n, d)``: a component k ~ Categorical(π), then z ~ N(μ_k, Σ_k).

        :param torch.Generator generator: for reproducible draws (default: the global RNG).
        :param bool return_components: also return the component of each draw, ``(n,)``.
        """
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covariances)
        z = (self.means[k] + (chol[k] @ eps.unsqueeze(-1)).squeeze(-1)).to(dtype)
        return (z, k) if return_components else z


def _log_joint(z, weights, means, covariances):
    """``log π_k + log N(z_n; μ_k, Σ_k)``, shape ``(..., K)``."""
    mvn = torch.distributions.MultivariateNormal(means, covariance_matrix=covariances, validate_args=False)
    return weights.log() + mvn.log_prob(z.unsqueeze(-2))


def _kmeans_plus_plus(z, k, generator):
    """k-means++ seeding: the first center uniformly, each next one with probability ∝ squared distance."""
    n = z.shape[0]
    centers = [z[torch.randint(n, (1,), generator=generator)].squeeze(0)]
    d2 = ((z - centers[0]) ** 2).sum(-1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        centers.append(z[torch.multinomial(probs, 1, generator=generator)].squeeze(0))
        d2 = torch.minimum(d2, ((z - centers[-1]) ** 2).sum(-1))
    return torch.stack(centers)


def _m_step(z, resp, covariance, reg):
    nk = resp.sum(0) + 10 * torch.finfo(z.dtype).eps
    weights = nk / nk.sum()
    means = resp.T @ z / nk[:, None]
    diff = z - means.unsqueeze(1)  # (K, N, d)
    weighted = diff * resp.T.unsqueeze(-1)
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    if covariance == "full":
        cov = weighted.transpose(-1, -2) @ diff / nk[:, None, None]
    else:
        cov = torch.diag_embed((weighted * diff).sum(1) / nk[:, None])
    return weights, means, cov + reg * eye


def fit_gmm(
    codes, n_components=10, covariance="full", max_iter=200, tol=1e-6, reg=1e-6, seed=0, kmeans_iter=20, n_init=3
):
    """Fit a Gaussian mixture to ``codes`` ``(N, d)`` by EM (see the module docstring).

    :param int n_components: K (Ghosh et al. use 10).
    :param str covariance: ``"full"`` or ``"diag"``.
    :param int max_iter: most EM iterations.
    :param float tol: stop when the mean log-likelihood rises by less (nats per code).
    :param float reg: added to each covariance's diagonal (keeps it positive definite).
    :param int seed: seed of the k-means++ initialisation; equal seeds give equal fits.
    :param int kmeans_iter: Lloyd's k-means iterations after the seeding; the
        clusters then give the first M-step.
    :param int n_init: EM runs from successive seedings (one generator); the
        one with the highest final log-likelihood is returned (EM finds a local maximum).
    :returns: :class:`GaussianMixture`.
    """
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)}, got {covariance!r}")
    z = torch.as_tensor(codes).detach().double().cpu()
    if z.dim() != 2 or z.shape[0] < n_components:
        raise DataError(
            f"codes must have shape (N, d) with N >= n_components = {n_components}, got "
            f"{tuple(z.shape)}: a gmm:K sampler needs at least K training codes"
        )
    generator = torch.Generator().manual_seed(seed)
    fits = [_em(z, n_components, covariance, max_iter, tol, reg, kmeans_iter, generator) for _ in range(n_init)]
    return max(fits, key=lambda fit: fit.log_likelihoods[-1])


def _em(z, n_components, covariance, max_iter, tol, reg, kmeans_iter, generator):
    centers = _kmeans_plus_plus(z, n_components, generator)
    for _ in range(kmeans_iter):  # Lloyd's iterations from the k-means++ seeds
        nearest = torch.cdist(z, centers).argmin(-1)
        for k in range(n_components):
            if (nearest == k).any():
                centers[k] = z[nearest == k].mean(0)
    nearest = torch.cdist(z, centers).argmin(-1)
    resp = torch.nn.functional.one_hot(nearest, n_components).double()
    weights, means, cov = _m_step(z, resp, covariance, reg + 1e-3 * z.var(0).mean().item())
    history = []
    for _ in range(max_iter):
        log_joint = _log_joint(z, weights, means, cov)  # E-step
        log_norm = log_joint.logsumexp(-1, keepdim=True)
        history.append(log_norm.mean().item())
        if len(history) > 1 and history[-1] - history[-2] < tol:
            break
        weights, means, cov = _m_step(z, (log_joint - log_norm).exp(), covariance, reg)
    return GaussianMixture(weights, means, cov, history)


@torch.no_grad()
def encode_codes(model, images, batch_size=500, seed=0):
    """The codes of ``images``: :meth:`Autoencoder.code` where the model has it, else the mean of
    q(z|x) (a draw from it, with ``seed``, where it has no mean). Shape ``(N, latent_dim)``."""
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size]
            if hasattr(model, "code"):
                out.append(model.code(x))
                continue
            q = model.posterior(x.reshape((x.shape[0],) + model.image_shape))
            try:
                out.append(q.mean)
            except NotImplementedError:
                out.append(q.sample())
    return torch.cat(out)


class CodeSampler:
    """A generative model from an autoencoder: draw codes from the fitted mixture, decode them.

    :ivar model: the autoencoder or VAE (its :meth:`decode` maps codes to mean images).
    :ivar GaussianMixture gmm: the mixture fitted to the training codes.
    """

    def __init__(self, model, gmm):
        self.model, self.gmm = model, gmm

    def sample(self, n, generator=None):
        """``n`` codes ``(n, latent_dim)`` from the mixture, on the model's device."""
        device = next(self.model.parameters()).device
        return self.gmm.sample(n, generator=generator).to(device)

    @torch.no_grad()
    def decode(self, z):
        """Mean images E[x|z], ``(n, C, H, W)``."""
        return self.model.decode(z)

    def sample_images(self, n, generator=None):
        """``n`` decoded draws, ``(n, C, H, W)``."""
        return self.decode(self.sample(n, generator=generator))


def fit_code_gmm(model, images, n_components=10, covariance="full", batch_size=500, seed=0, **em):
    """Fit a Gaussian mixture to the codes of ``images`` under ``model``; returns a :class:`CodeSampler`.

    :param model: a :class:`~pyrogen.models.autoencoder.Autoencoder` or :class:`~pyrogen.models.VAE`.
    :param torch.Tensor images: training images ``(N, C, H, W)``.
    :param int n_components: mixture components (10 in Ghosh et al. 2020).
    :param str covariance: ``"full"`` or ``"diag"``.
    :param em: further arguments of :func:`fit_gmm` (``max_iter``, ``tol``, ``reg``).
    """
    was_training = model.training
    model.eval()
    try:
        codes = encode_codes(model, images, batch_size=batch_size, seed=seed)
    finally:
        model.train(was_training)
    return CodeSampler(model, fit_gmm(codes, n_components, covariance, seed=seed, **em))


def fit_run_gmm(run, n_components=10, seed=0, **em):
    """:func:`fit_code_gmm` on the training images of an opened VAE or autoencoder run
    (:func:`pyrogen.runs.open_run`), binarized as the run trained: its own draw for
    static binarization, one draw seeded by ``seed`` for dynamic.

    :raises PyrogenError: for a model whose codes are not those of one latent site with
        ``posterior`` or ``code`` (a GAN, the two-layer VAE).
    """
    if not run.record.fits_codes:
        raise PyrogenError(f"the GMM sampler fits the codes of an autoencoder or a VAE, not of a {run.kind} run")
    model = run.model()
    if not (hasattr(model, "code") or hasattr(model, "posterior")):
        raise PyrogenError(
            f"the GMM sampler needs one latent code per image, which {type(model).__name__} "
            "does not give (it has more than one latent layer)"
        )
    train, binarize = run.data()[0], run.settings.data.binarize
    if binarize == "static":  # the very draw the run trained on (its loader's stream)
        train = static_binarize(train, seed=stream_seed("data_order", run.settings.train.seed))
    elif binarize == "dynamic":  # one draw of the kind it trained on
        train = static_binarize(train, seed=seed)
    return fit_code_gmm(model, train, n_components=n_components, seed=seed, **em)
