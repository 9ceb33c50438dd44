"""Sample quality: Fréchet distance, precision and recall in a feature space.

A generative model's samples are compared with real images through a feature
network :math:`\\phi` mapping images to vectors (by default pyrogen's own
Fashion-MNIST classifier, :mod:`pyrogen.evaluation.features`; any
``nn.Module`` mapping ``(N, C, H, W)`` images in [0, 1] to ``(N, D)`` features
will do). Scores compare only under the same feature network.

**Fréchet distance** (Heusel et al. 2017, "GANs trained by a two time-scale
update rule converge to a local Nash equilibrium"): fit a Gaussian to each set
of features, means :math:`m_r, m_g` and covariances :math:`S_r, S_g`, and
report the squared 2-Wasserstein distance between the two Gaussians,

.. math:: \\mathrm{FD} = \\|m_r - m_g\\|^2 + \\operatorname{tr}\\bigl(S_r + S_g - 2 (S_r S_g)^{1/2}\\bigr).

With Inception features this is the FID; with a Fashion-MNIST classifier's it
is not comparable with published FIDs. Lower is better; real test images
against real training images give the floor (it is not 0 for finite samples).

**Precision and recall** (Kynkäänniemi, Karras, Laine, Lehtinen, Aila 2019,
"Improved precision and recall metric for assessing generative models"): the
real manifold is the union of balls around each real feature vector with
radius the distance to its k-th nearest real neighbour (k = 3), likewise for
the generated one. Precision is the fraction of generated samples inside the
real manifold (are the samples realistic?); recall the fraction of real
samples inside the generated manifold (is the data's variety covered?). Both
lie in [0, 1], higher is better; a model that collapses onto a few modes has
high precision and low recall.
"""

import warnings

import numpy as np
import torch
from scipy import linalg

from pyrogen.checks import is_integer
from pyrogen.data import check_images
from pyrogen.errors import DataError

SQRTM_EPS = 1e-6
"""Added to both covariances' diagonals when the product's square root is not finite (singular product)."""


def _as_features(features, name, min_rows=2):
    """``features`` as a float64 ``(N, D)`` numpy array, checked."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise DataError(f"{name} must be a 2-d array of feature vectors (N, D), got shape {features.shape}")
    if features.shape[0] < min_rows:
        raise DataError(f"{name} needs at least {min_rows} feature vectors, got {features.shape[0]}")
    if not np.isfinite(features).all():
        raise DataError(f"{name} holds NaN or infinite values")
    return features


def feature_statistics(features):
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of features ``(N, D)``, float64 numpy arrays."""
    features = _as_features(features, "features")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2, eps=SQRTM_EPS):
    """Fréchet distance between the Gaussians :math:`N(\\mu_1, \\Sigma_1)` and :math:`N(\\mu_2, \\Sigma_2)`.

    :math:`\\|\\mu_1 - \\mu_2\\|^2 + \\operatorname{tr}(\\Sigma_1 + \\Sigma_2 - 2(\\Sigma_1\\Sigma_2)^{1/2})`,
    the matrix square root by :func:`scipy.linalg.sqrtm`. As in pytorch-fid and
    PyTorch-StudioGAN, when the product is singular (SciPy warns, or the square
    root is not finite) ``eps * I`` is added to both covariances, and a
    negligible imaginary part (numerical noise, diagonal below 1e-3) is dropped.

    :returns: a float (squared feature units).
    :raises DataError: on mismatched shapes, or a large imaginary part.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise DataError(
            f"means must have shape (D,) and covariances (D, D) with the same D; got {mu1.shape}, "
            f"{sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    if singular or not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise DataError(
                f"the square root of the covariance product has a large imaginary part "
                f"({np.abs(covmean.imag).max():.3g}); the covariances are not valid"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance(real_features, fake_features):
    """Fréchet distance between two sets of feature vectors ``(N, D)`` and ``(M, D)``.

    Fits a Gaussian (mean, unbiased covariance) to each set and applies
    :func:`frechet_distance_from_statistics`. 0 for identical sets (up to the
    square root's rounding); biased upwards for small sets, so compare scores
    computed from the same numbers of samples.
    """
    real = _as_features(real_features, "real_features")
    fake = _as_features(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise DataError(
            f"real_features and fake_features must have the same width D, got {real.shape[1]} and {fake.shape[1]}"
        )
    return frechet_distance_from_statistics(*feature_statistics(real), *feature_statistics(fake))


def _pairwise_distances(a, b, chunk_size):
    """Yield ``(start, D)`` with ``D`` the Euclidean distances of rows ``a[start:start+chunk]`` to all of ``b``."""
    for start in range(0, a.shape[0], chunk_size):
        yield start, torch.cdist(a[start : start + chunk_size], b)


def knn_radii(features, k=3, chunk_size=1000):
    """Distance of each feature vector ``(N, D)`` to its k-th nearest neighbour in the set (itself excluded):
    ``(N,)``."""
    radii = torch.empty(features.shape[0], dtype=features.dtype)
    for start, dist in _pairwise_distances(features, features, chunk_size):
        # the smallest distance is each point's own (0); the (k+1)-th smallest is the k-th neighbour
        radii[start : start + dist.shape[0]] = dist.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def _coverage(queries, points, radii, chunk_size):
    """Fraction of ``queries`` within ``radii[j]`` of some ``points[j]``."""
    inside = 0
    for _, dist in _pairwise_distances(queries, points, chunk_size):
        inside += (dist <= radii).any(dim=1).sum().item()
    return inside / queries.shape[0]


def precision_recall(real_features, fake_features, k=3, chunk_size=1000):
    """Improved precision and recall of Kynkäänniemi et al. (2019) with k-nearest-neighbour balls.

    :param real_features: ``(N, D)`` features of real images (tensor or array).
    :param fake_features: ``(M, D)`` features of generated images.
    :param int k: the neighbour that sets each ball's radius (3 in the paper).
    :param int chunk_size: rows of the distance matrix computed at once.
    :returns: ``(precision, recall)``: the fraction of generated samples within
        some real sample's k-NN ball, and of real samples within some generated
        sample's k-NN ball. Distances in float64.
    """
    if not is_integer(k) or k < 1:
        raise DataError(f"k must be a positive integer, got {k!r}")
    real = torch.from_numpy(_as_features(real_features, "real_features", min_rows=k + 1))
    fake = torch.from_numpy(_as_features(fake_features, "fake_features", min_rows=k + 1))
    if real.shape[1] != fake.shape[1]:
        raise DataError(
            f"real_features and fake_features must have the same width D, got {real.shape[1]} and {fake.shape[1]}"
        )
    precision = _coverage(fake, real, knn_radii(real, k, chunk_size), chunk_size)
    recall = _coverage(real, fake, knn_radii(fake, k, chunk_size), chunk_size)
    return precision, recall


@torch.no_grad()
def extract_features(feature_net, images, batch_size=500, name="images"):
    """Features ``(N, D)`` of images ``(N, C, H, W)`` in [0, 1], computed in batches in eval mode.

    The images are moved to the device and dtype of ``feature_net``'s first
    parameter; the features come back on the CPU as float64.

    :raises DataError: if the images are not a 4-d floating tensor in [0, 1],
        or the network does not return one finite vector per image.
    """
    check_images(images, name)
    if images.dim() != 4:
        raise DataError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")
    param = next(iter(feature_net.parameters()), None)
    to = {"device": param.device, "dtype": param.dtype} if param is not None else {}
    was_training = feature_net.training
    feature_net.eval()
    try:
        out = [
            feature_net(images[i : i + batch_size].to(**to)).detach().double().cpu()
            for i in range(0, images.shape[0], batch_size)
        ]
    finally:
        feature_net.train(was_training)
    feats = torch.cat(out)
    if feats.dim() != 2 or feats.shape[0] != images.shape[0]:
        raise DataError(
            f"the feature network must map {tuple(images.shape)} images to ({images.shape[0]}, D) features, "
            f"got {tuple(feats.shape)}"
        )
    if not torch.isfinite(feats).all():
        raise DataError(f"the feature network returned NaN or infinite features for {name}")
    return feats


def evaluate_samples(fake_images, real_images, feature_net=None, k=3, batch_size=500):
    """Fréchet distance, precision and recall of generated images against real ones.

    :param torch.Tensor fake_images: generated images ``(M, C, H, W)`` in [0, 1]
        (decoder means, or samples; map a Tanh generator's [-1, 1] output with
        ``(x + 1) / 2`` first).
    :param torch.Tensor real_images: real images ``(N, C, H, W)`` in [0, 1],
        e.g. the 10,000 Fashion-MNIST test images.
    :param nn.Module feature_net: maps ``(N, C, H, W)`` images in [0, 1] to
        ``(N, D)`` features. Default: pyrogen's cached Fashion-MNIST classifier
        (:func:`~pyrogen.evaluation.features.load_feature_network`), which
        raises :class:`~pyrogen.models.features.FeatureNetworkError` naming
        the command that trains it when it is not cached.
    :param int k: nearest neighbour that sets the precision/recall radii.
    :param int batch_size: images per feature-network call.
    :returns: dict with ``frechet_distance``, ``precision``, ``recall``,
        ``num_fake``, ``num_real``, ``k`` and ``feature_net`` (the first 12 hex
        digits of the default network's SHA-256, or ``"user"``).
    """
    if feature_net is None:
        from pyrogen.evaluation.features import load_feature_network

        feature_net = load_feature_network()
    real = extract_features(feature_net, real_images, batch_size, "real_images")
    fake = extract_features(feature_net, fake_images, batch_size, "fake_images")
    precision, recall = precision_recall(real, fake, k=k)
    sha = getattr(feature_net, "sha256", None)
    return {
        "frechet_distance": frechet_distance(real, fake),
        "precision": precision,
        "recall": recall,
        "num_fake": fake.shape[0],
        "num_real": real.shape[0],
        "k": k,
        "feature_net": sha[:12] if isinstance(sha, str) else "user",
    }


def evaluate_run(run_dir, num_samples=10000, feature_net=None, seed=0, device="cpu", batch_size=1000):
    """:func:`evaluate_samples` for the model of a run directory made by ``pyrogen train vae|ae|gan``.

    Draws ``num_samples`` samples (decoder means E[x|z] for z ~ p(z) for a VAE
    or autoencoder, G(z) for a GAN; seeded by ``seed``) and scores them against
    as many images of the run's data set's test split (grey levels, never
    binarized), all 10,000 for Fashion-MNIST by default.

    :returns: the dict of :func:`evaluate_samples`.
    """
    import pyro

    from pyrogen.data import load_dataset
    from pyrogen.rundirs import BUILT_IN_KINDS, open_run, read_splits
    from pyrogen.settings import migrate_data

    if not is_integer(num_samples) or num_samples < 2:
        raise DataError(f"num_samples must be an integer of at least 2, got {num_samples!r}")
    run = open_run(run_dir, device)
    model = run.model()
    data = run.settings.data
    source = run.source
    if source is None or source.get("kind") in BUILT_IN_KINDS:
        real = load_dataset(data.dataset, "test", data.root).images
    else:  # your own data: their test split, grey levels (the recorded source, re-opened)
        if tuple(source["shape"]) != (1, 28, 28):
            raise DataError(
                f"sample quality is measured in the features of pyrogen's Fashion-MNIST classifier, "
                f"which takes 1x28x28 images; the run in {run_dir!r} trained on examples of shape "
                f"{tuple(source['shape'])}"
            )
        real = read_splits(migrate_data({**data.to_dict(), "stream": False}))[1].images
    if num_samples > len(real):
        raise DataError(f"num_samples must be at most the {len(real)} test images, got {num_samples}")
    pyro.set_rng_seed(seed)
    with torch.no_grad():
        fake = torch.cat(
            [model.sample(min(batch_size, num_samples - i)).cpu() for i in range(0, num_samples, batch_size)]
        )
    return evaluate_samples(fake, real[:num_samples], feature_net=feature_net)


# ---------------------------------------------------------------------- class coverage and linear probes

COVERAGE_THRESHOLD = 0.02
"""A class counts as covered when more than this share of the samples is assigned to it."""


def _labels(pred, name, num_classes=None):
    """Labels as an int64 tensor ``(N,)`` (checked against ``num_classes`` when given)."""
    from pyrogen.models.conditional import check_labels

    if num_classes is None:  # any labels from 0 up
        num_classes = 1
        if isinstance(pred, torch.Tensor) and pred.dim() == 1 and pred.numel() and not pred.is_floating_point():
            num_classes = max(int(pred.max()) + 1, 1)
    return check_labels(pred, num_classes, name)


def class_coverage(pred, num_classes=10, threshold=COVERAGE_THRESHOLD):
    """How generated samples spread over the classes: a health figure for mode collapse.

    Given the classes that a classifier (e.g. :func:`pyrogen.evaluation.features.load_classifier`)
    assigns to N generated samples, with :math:`\\hat p_k` the share of samples in class k:

    * ``class_distribution``: :math:`\\hat p`, a tensor ``(num_classes,)`` summing to 1;
    * ``class_entropy``: :math:`H(\\hat p) = -\\sum_k \\hat p_k \\log \\hat p_k` in nats (0 log 0 = 0),
      :math:`\\log K` (2.303 for 10 classes) for a perfectly even spread, 0 for a single class;
    * ``classes_covered``: the number of classes with :math:`\\hat p_k >` ``threshold`` (2%).

    :param torch.Tensor pred: predicted labels ``(N,)``, integers in ``0 .. num_classes - 1``.
    :param int num_classes: K.
    :param float threshold: the share above which a class counts as covered.
    :returns: dict with the three entries (the entropy a float, the count an int).
    """
    if not is_integer(num_classes) or num_classes < 1:
        raise DataError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not 0 <= threshold < 1:
        raise DataError(f"threshold must lie in [0, 1), got {threshold!r}")
    pred = _labels(pred, "pred", num_classes)
    if pred.numel() == 0:
        raise DataError("pred must hold at least one predicted label")
    p = torch.bincount(pred.cpu(), minlength=num_classes).double() / pred.numel()
    entropy = -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum()
    return {"class_distribution": p, "class_entropy": float(entropy), "classes_covered": int((p > threshold).sum())}


def conditional_accuracy(pred, requested):
    """The share of conditional samples that a classifier assigns to the class they were generated for.

    :param torch.Tensor pred: predicted labels ``(N,)``.
    :param requested: the requested labels ``(N,)``, or one int for all N.
    :returns: a float in [0, 1] (chance is 1/K for a generator that ignores its label).
    """
    pred = _labels(pred, "pred")
    if isinstance(requested, int) and not isinstance(requested, bool):
        requested = torch.full_like(pred, requested)
    requested = _labels(requested, "requested")
    if requested.shape != pred.shape or pred.numel() == 0:
        raise DataError(
            f"pred and requested must hold the same, non-zero number of labels, got "
            f"{pred.numel()} and {requested.numel()}"
        )
    return float((pred.cpu() == requested.cpu()).double().mean())


def linear_probe_accuracy(codes_train, y_train, codes_test, y_test, num_classes=None, weight_decay=1e-3, max_iter=500):
    """Test accuracy of a multinomial logistic regression fitted to codes: how linearly the codes
    E(x) of an encoder separate the classes (the usual check of ALI / BiGAN features, Donahue et al. 2017).

    The codes are standardised with the training codes' mean and standard deviation; the
    weights :math:`W` ``(D, K)`` and biases start at zero and minimise the mean cross-entropy
    plus ``weight_decay`` :math:`\\cdot \\lVert W \\rVert^2 / 2` by full-batch L-BFGS with a
    strong-Wolfe line search (float64), so the result is deterministic.

    :param torch.Tensor codes_train: ``(N, D)`` codes of the training examples.
    :param torch.Tensor y_train: ``(N,)`` their labels.
    :param torch.Tensor codes_test: ``(M, D)``.
    :param torch.Tensor y_test: ``(M,)``.
    :param int num_classes: K (default: one more than the largest label seen).
    :returns: accuracy on the test codes, a float in [0, 1].
    """
    codes_train = torch.from_numpy(_as_features(codes_train, "codes_train"))
    codes_test = torch.from_numpy(_as_features(codes_test, "codes_test", min_rows=1))
    if codes_train.shape[1] != codes_test.shape[1]:
        raise DataError(
            f"codes_train and codes_test must have the same width, got {codes_train.shape[1]} and {codes_test.shape[1]}"
        )
    if num_classes is None:
        num_classes = int(max(_labels(y_train, "y_train").max(), _labels(y_test, "y_test").max())) + 1
    y_train, y_test = _labels(y_train, "y_train", num_classes).cpu(), _labels(y_test, "y_test", num_classes).cpu()
    for codes, y, name in ((codes_train, y_train, "train"), (codes_test, y_test, "test")):
        if len(codes) != len(y):
            raise DataError(f"codes_{name} and y_{name} must have the same length, got {len(codes)} and {len(y)}")
    mean, std = codes_train.mean(0), codes_train.std(0).clamp_min(1e-8)
    a, b = (codes_train - mean) / std, (codes_test - mean) / std
    weight = torch.zeros(a.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optim = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12
    )

    def closure():
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ weight + bias, y_train)
        loss = loss + 0.5 * weight_decay * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optim.step(closure)
    with torch.no_grad():
        return float(((b @ weight + bias).argmax(1) == y_test).double().mean())
