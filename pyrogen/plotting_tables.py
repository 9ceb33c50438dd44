"""Pictures for data that are not images: rows of a table, cells of a count matrix.

Image grids (reconstructions, prior samples, traversals, interpolations, the 2-D manifold) show
examples as pictures, which a vector of ``D`` features is not. For such data a run gets instead:

* ``latent_codes.png``: the guide's means of held-out examples in the plane, by label
  (:func:`plot_codes_by_label`, for examples of any shape);
* ``feature_reconstruction.png``: the decoder's mean E[x|z] at the guide's mean against the data,
  feature by feature, and the correlation of the two for every feature
  (:func:`plot_feature_reconstruction`);
* ``training_curves.png``: as for every run (:func:`pyrogen.plotting.plot_training_curves`, which
  :func:`pyrogen.plotting.plot_run` draws).

:func:`inapplicable_pictures` says which picture kinds do not apply to a run's data, and why, for
the report. All figures are drawn with matplotlib's object interface (no global state, no display).
"""

import io
import os

import torch
from matplotlib.figure import Figure

from pyrogen.errors import DataError
from pyrogen.files import atomic_write

IMAGE_PICTURES = (
    "reconstructions.png",
    "prior_samples.png",
    "latent_traversals.png",
    "interpolations.png",
    "manifold.png",
)
"""The picture kinds that draw examples as images."""

TABLE_PICTURES = ("latent_codes.png", "feature_reconstruction.png", "training_curves.png")
"""What a run on flat vectors draws instead (:func:`plot_table_pictures`)."""


def is_image_shape(shape):
    """Whether examples of ``shape`` are images: ``(C, H, W)`` with 1 or 3 channels."""
    shape = tuple(shape)
    return len(shape) == 3 and shape[0] in (1, 3)


def inapplicable_pictures(example_shape, latent_dim, has_labels=True):
    """The picture kinds that do not apply to a run's data, each with the reason in one line.

    :param example_shape: one example's shape, ``(C, H, W)`` or ``(D,)``.
    :param int latent_dim: the dimension of z.
    :param bool has_labels: whether the data carry labels.
    :returns: a list of ``(picture file name, reason)``; empty when every picture applies.
    """
    shape = tuple(example_shape)
    out = []
    if not is_image_shape(shape):
        what = (
            f"vectors of {shape[0]} features"
            if len(shape) == 1
            else f"arrays of shape {shape} (not 1- or 3-channel images)"
        )
        replacement = {
            "reconstructions.png": "feature_reconstruction.png plots reconstructions against the "
            "data, feature by feature",
            "prior_samples.png": "a sample is a vector with no picture as an image",
            "latent_traversals.png": "a decoded traversal is a vector with no picture as an image",
            "interpolations.png": "a decoded interpolation is a vector with no picture as an image",
            "manifold.png": "a decoded grid of codes is a grid of vectors with no picture as images",
        }
        out += [(name, f"the examples are {what}; {replacement[name]}") for name in IMAGE_PICTURES]
    elif latent_dim != 2:
        out.append(
            (
                "manifold.png",
                f"the latent space has {latent_dim} dimensions; the manifold is drawn "
                "for 2-dimensional latent spaces only",
            )
        )
    if not has_labels:
        out.append(("latent_codes.png (colours)", "the data have no labels: the codes are drawn in one colour"))
    return out


def _save(fig, path, dpi):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def posterior_codes(vae, x, batch_size=500):
    """Posterior means E_q[z|x] (a draw where the family has no mean), ``(N, latent_dim)``."""
    out = []
    for i in range(0, x.shape[0], batch_size):
        q = vae.posterior(x[i : i + batch_size])
        try:
            out.append(q.mean)
        except NotImplementedError:
            out.append(q.sample())
    return torch.cat(out)


def _check_examples(x, vae, name="x"):
    shape = tuple(vae.image_shape)
    if not torch.is_tensor(x) or tuple(x.shape[1:]) != shape or x.shape[0] == 0:
        raise DataError(
            f"{name} must be examples of shape (N, {', '.join(map(str, shape))}), "
            f"got {tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}"
        )


def _plane(z):
    """Codes ``(N, d)`` in the plane and the axes' names: as they are for d <= 2, else their first two
    principal components with the share of the variance each explains."""
    d = z.shape[1]
    if d == 1:
        return torch.cat([z, torch.zeros_like(z)], 1), ("z1", "")
    if d == 2:
        return z, ("z1", "z2")
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    share = (s[:2] ** 2 / (s**2).sum()).tolist()
    return centred @ v[:2].T, tuple(
        f"principal component {i + 1} ({100 * share[i]:.0f}% of variance)" for i in range(2)
    )


@torch.no_grad()
def plot_codes_by_label(vae, x, path, labels=None, class_names=None, figsize=(7.0, 6.0), dpi=100):
    """The guide's means E_q[z|x] of ``x`` (examples of any shape) in the plane, one colour per label.

    :param x: examples ``(N, *vae.image_shape)``.
    :param labels: integer labels ``(N,)``, or None (one colour).
    :param class_names: names of the labels (the integers otherwise).
    :returns: ``path``.
    """
    _check_examples(x, vae)
    z, axes = _plane(posterior_codes(vae, x).float().cpu())
    fig = Figure(figsize=figsize)
    ax = fig.add_axes([0.1, 0.09, 0.62, 0.83])
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=4, alpha=0.6, color="C0", linewidths=0, rasterized=True)
        title = f"Posterior means of {x.shape[0]} examples (no labels)"
    else:
        labels = torch.as_tensor(labels).reshape(-1).cpu()
        if labels.shape[0] != x.shape[0]:
            raise DataError(f"labels must have one entry per example ({x.shape[0]}), got {labels.shape[0]}")
        for i, c in enumerate(labels.unique().tolist()):
            mask = labels == c
            name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
            ax.scatter(
                z[mask, 0], z[mask, 1], s=4, alpha=0.6, color=f"C{i % 10}", label=name, linewidths=0, rasterized=True
            )
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), markerscale=3, frameon=False, fontsize=8)
        title = f"Posterior means of {x.shape[0]} examples, by label"
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=10)
    return _save(fig, path, dpi)


def _correlation(a, b):
    """Pearson correlation of the columns of ``a`` and ``b`` ``(N, D)``; NaN where a column is constant."""
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / (a.norm(dim=0) * b.norm(dim=0))


@torch.no_grad()
def plot_feature_reconstruction(vae, x, path, feature_names=None, num_features=8, dpi=100):
    """Reconstruction against data, feature by feature.

    Reconstructions are the likelihood's mean E[x|z] at the guide's mean (:meth:`VAE.reconstruct`;
    with a library size, at each example's own total). The first panels plot reconstruction against
    data for the ``num_features`` features of largest variance (log1p of both for counts, whose
    scatter is otherwise a few points far out); the last is the histogram, over every feature, of
    the correlation between data and reconstruction.

    :param x: examples ``(N, D)`` (or any shape; each entry is a feature).
    :param feature_names: names of the features (column names), else ``feature j``.
    :returns: ``path``.
    """
    _check_examples(x, vae)
    recon = torch.cat([vae.reconstruct(x[i : i + 500]) for i in range(0, x.shape[0], 500)])
    data, recon = x.flatten(1).float().cpu(), recon.flatten(1).float().cpu()
    counts = getattr(getattr(vae, "likelihood", None), "data_kind", None) == "counts"
    if counts:
        data, recon = torch.log1p(data), torch.log1p(recon.clamp(min=0))
    corr = _correlation(data, recon)
    order = data.var(0).argsort(descending=True)[: min(num_features, data.shape[1])].tolist()
    cols = 3
    rows = (len(order) + 1 + cols - 1) // cols
    fig = Figure(figsize=(3.4 * cols, 3.0 * rows), layout="constrained")
    scale = "log1p " if counts else ""
    for k, j in enumerate(order):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.scatter(data[:, j], recon[:, j], s=4, alpha=0.5, linewidths=0, rasterized=True)
        lo = min(data[:, j].min().item(), recon[:, j].min().item())
        hi = max(data[:, j].max().item(), recon[:, j].max().item())
        ax.plot([lo, hi], [lo, hi], color="0.5", linewidth=0.8)
        name = feature_names[j] if feature_names is not None and j < len(feature_names) else f"feature {j}"
        ax.set_title(f"{name} (r = {corr[j].item():.2f})", fontsize=9)
        ax.set_xlabel(f"{scale}data", fontsize=8)
        ax.set_ylabel(f"{scale}reconstruction", fontsize=8)
    ax = fig.add_subplot(rows, cols, len(order) + 1)
    finite = corr[torch.isfinite(corr)]
    ax.hist(finite.numpy(), bins=30, range=(-1, 1), color="C1")
    ax.set_title(
        f"r per feature ({finite.numel()}; median {finite.median().item() if finite.numel() else float('nan'):.2f})",
        fontsize=9,
    )
    ax.set_xlabel("r(data, reconstruction)", fontsize=8)
    ax.set_ylabel("features", fontsize=8)
    fig.suptitle(f"Reconstruction against data, {x.shape[0]} examples", fontsize=10)
    return _save(fig, path, dpi)


def plot_table_pictures(vae, x, new_name, labels=None, class_names=None, feature_names=None, num_points=5000, dpi=100):
    """The pictures of a model of examples that are not images: codes by label and reconstruction per
    feature on the first ``num_points`` of ``x`` (held-out examples). ``new_name(name)`` gives each
    picture's path (:func:`pyrogen.plotting.plot_run` draws the training curves). Returns the paths."""
    x = x[:num_points]
    labels = None if labels is None else labels[:num_points]
    return [
        plot_codes_by_label(vae, x, new_name("latent_codes.png"), labels, class_names, dpi=dpi),
        plot_feature_reconstruction(vae, x, new_name("feature_reconstruction.png"), feature_names, dpi=dpi),
    ]
