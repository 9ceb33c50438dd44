"""Pictures of a trained model and its run, written as PNG files.

Every function draws one matplotlib figure (the Agg renderer: no display is
needed, and pyplot's global state is never touched), writes it atomically to
``path`` and returns the path. A figure is ``figsize`` inches at ``dpi``
dots per inch, so the PNG is exactly ``figsize * dpi`` pixels (no tight
cropping). Image grids use :func:`torchvision.utils.make_grid`.

The model functions take a :class:`~pyrogen.models.VAE` (or anything with
its ``posterior``, ``decode``, ``prior``, ``image_shape`` and ``latent_dim``); the codes of an
input are the mean of q(z|x). A :class:`~pyrogen.models.TwoLayerVAE` is shown through its
lower code z1, the one its decoder reads (:class:`LowerLayer`): codes are the mean of
q(z1|x), prior draws and quantiles those of the marginal
:math:`p(z_1) = \\int p(z_1 \\mid z_2)\\, p(z_2)\\, dz_2`.
"""

import io
import math
import os

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pyrogen.errors import DataError
from pyrogen.files import atomic_write
from pyrogen.models.two_layer import TwoLayerVAE
from pyrogen.plotting_tables import is_image_shape, plot_table_pictures, posterior_codes

GRID_CELL = 0.55
"""Inches per image in a grid figure."""


def _save(fig, path, dpi):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def _grid_figsize(rows, cols, left=0.0, top=0.35, bottom=0.0):
    return (cols * GRID_CELL + left + 0.2, rows * GRID_CELL + top + bottom + 0.2)


def _show_grid(fig, images, ncol, title, figsize, left=0.0, top=0.35, bottom=0.0, row_labels=None, padding=2):
    """Draw ``images (N, C, H, W)`` in [0, 1] as one grid filling the figure below its title."""
    from torchvision.utils import make_grid

    images = images.detach().float().cpu().clamp(0, 1)
    grid = make_grid(images, nrow=ncol, padding=padding, pad_value=1.0)
    w, h = figsize
    ax = fig.add_axes([(left + 0.1) / w, (bottom + 0.1) / h, 1 - (left + 0.2) / w, 1 - (top + bottom + 0.2) / h])
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        cell = images.shape[-2] + 2
        ax.set_yticks([2 + cell * (i + 0.5) for i in range(len(row_labels))], row_labels, fontsize=8)
        ax.tick_params(length=0)
    else:
        ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle(title, fontsize=10, y=1 - 0.08 / h, va="top")
    return ax


class _MarginalPrior:
    """Draws of :math:`z_1 \\sim p(z_1) = \\int p(z_1 \\mid z_2)\\, p(z_2)\\, dz_2` (no density, no quantile
    function)."""

    def __init__(self, vae):
        self.vae = vae

    def sample(self, sample_shape=torch.Size()):
        z2 = self.vae.prior().sample(sample_shape)
        params = self.vae.decoder2(z2)
        return torch.distributions.Normal(params["loc"], params["scale"]).sample()


class LowerLayer:
    """A :class:`~pyrogen.models.TwoLayerVAE` as the plots see a VAE: through its lower code z1.

    ``posterior(x)`` is :math:`q(z_1 \\mid x)` (a diagonal Normal, event shape ``(latent_dims[0],)``),
    ``prior()`` draws from the marginal :math:`p(z_1)` (ancestral: :math:`z_2 \\sim p(z_2)`, then
    :math:`z_1 \\sim p(z_1 \\mid z_2)`), ``decode(z1)`` is the model's, ``latent_dim`` is dim z1.
    """

    def __init__(self, vae):
        self.vae = vae
        self.latent_dim = vae.latent_dims[0]
        self.image_shape = vae.image_shape

    def posterior(self, x):
        params = self.vae.encode(x)
        return torch.distributions.Independent(torch.distributions.Normal(params["loc"], params["scale"]), 1)

    def prior(self):
        return _MarginalPrior(self.vae)

    def decode(self, z1):
        return self.vae.decode(z1)


def _view(vae):
    """The model as the plots read it: a two-layer VAE through :class:`LowerLayer`, any other as it is."""
    return LowerLayer(vae) if isinstance(vae, TwoLayerVAE) else vae


def _check_images(x, vae, name="x"):
    if not torch.is_tensor(x) or x.dim() != 4 or tuple(x.shape[1:]) != tuple(vae.image_shape):
        raise DataError(
            f"{name} must be images of shape (N, {', '.join(map(str, vae.image_shape))}), "
            f"got {tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}"
        )


def _prior_quantiles(vae, probs):
    """Marginal prior quantiles of each latent dimension, ``(len(probs), latent_dim)``.

    The inverse CDF where the prior's base distribution has one, else empirical
    quantiles of 20,000 prior draws.
    """
    prior = vae.prior()
    base = getattr(prior, "base_dist", prior)
    probs = torch.as_tensor(probs, dtype=torch.float32, device=vae.prior().sample().device)
    try:
        return base.icdf(probs.unsqueeze(-1).expand(-1, vae.latent_dim))
    except (NotImplementedError, AttributeError, ValueError, RuntimeError):
        draws = prior.sample((20000,))
        return torch.quantile(draws, probs, dim=0)


def plot_image_grid(images, path, title, ncol=8, note=None, dpi=100):
    """Images ``(N, C, H, W)`` in [0, 1] as one titled grid, ``ncol`` per row, at 55 pixels per image.

    :param str note: a second line under the title (e.g. how the inputs were binarized).
    """
    top = 0.35 if note is None else 0.6
    figsize = _grid_figsize(math.ceil(images.shape[0] / ncol), ncol, top=top)
    fig = Figure(figsize=figsize)
    _show_grid(fig, images, ncol, title if note is None else f"{title}\n{note}", figsize, top=top)
    return _save(fig, path, dpi)


def plot_reconstruction_pairs(x, recon, path, ncol=8, note=None, dpi=100):
    """Inputs ``x`` and their reconstructions ``recon`` as row pairs: a row of inputs, below it theirs.

    :param str note: a second line under the title (e.g. how the inputs were binarized).
    """
    rows = math.ceil(x.shape[0] / ncol)
    pad = rows * ncol - x.shape[0]
    blank = torch.ones((pad,) + x.shape[1:], device=x.device)
    xs, rs = torch.cat([x, blank]), torch.cat([recon.to(x.device), blank])
    interleaved = torch.cat(
        [torch.stack([xs[r * ncol : (r + 1) * ncol], rs[r * ncol : (r + 1) * ncol]]) for r in range(rows)]
    ).flatten(0, 1)
    top = 0.35 if note is None else 0.6
    figsize = _grid_figsize(2 * rows, ncol, left=1.1, top=top)
    title = "Inputs (rows marked input) and their reconstructions (the row below each)"
    fig = Figure(figsize=figsize)
    _show_grid(
        fig,
        interleaved,
        ncol,
        title if note is None else f"{title}\n{note}",
        figsize,
        left=1.1,
        top=top,
        row_labels=["input", "reconstruction"] * rows,
    )
    return _save(fig, path, dpi)


@torch.no_grad()
def plot_reconstructions(vae, x, path, num=16, ncol=8, dpi=100):
    """Inputs with their reconstructions below them, row by row.

    :param x: images ``(N, C, H, W)``; the first ``num`` are shown.
    :returns: ``path``. Picture: ``2 * ceil(num / ncol)`` rows of ``ncol`` images.
    """
    vae = _view(vae)
    _check_images(x, vae)
    x = x[:num]
    recon = vae.decode(posterior_codes(vae, x))
    rows = math.ceil(x.shape[0] / ncol)
    pad = rows * ncol - x.shape[0]
    blank = torch.ones((pad,) + x.shape[1:], device=x.device)
    xs, rs = torch.cat([x, blank]), torch.cat([recon, blank])
    interleaved = torch.cat(
        [torch.stack([xs[r * ncol : (r + 1) * ncol], rs[r * ncol : (r + 1) * ncol]]) for r in range(rows)]
    ).flatten(0, 1)
    figsize = _grid_figsize(2 * rows, ncol, left=1.1)
    fig = Figure(figsize=figsize)
    _show_grid(
        fig,
        interleaved,
        ncol,
        "Inputs and reconstructions (decoded posterior mean)",
        figsize,
        left=1.1,
        row_labels=["input", "reconstruction"] * rows,
    )
    return _save(fig, path, dpi)


@torch.no_grad()
def plot_prior_samples(vae, path, num=64, ncol=8, dpi=100):
    """Mean images :math:`\\mathbb{E}[x \\mid z]` of ``num`` draws :math:`z \\sim p(z)`.

    Uses the global random state (seed it with ``pyro.set_rng_seed``).
    """
    vae = _view(vae)
    images = vae.decode(vae.prior().sample((num,)))
    figsize = _grid_figsize(math.ceil(num / ncol), ncol)
    fig = Figure(figsize=figsize)
    _show_grid(fig, images, ncol, r"Samples: $\mathbb{E}[x \mid z]$, $z \sim p(z)$", figsize)
    return _save(fig, path, dpi)


@torch.no_grad()
def plot_latent_traversals(vae, path, x=None, dims=None, num_steps=11, max_dims=10, dpi=100):
    """Latent traversals: one dimension at a time swept over its prior quantiles 5% ... 95%.

    Each row starts from one code (the posterior mean of ``x[0]``, or the
    prior's median when ``x`` is None) and changes a single coordinate. Which
    dimensions: ``dims``, or all when there are at most ``max_dims``, else the
    ``max_dims`` with the largest variance of the posterior mean over ``x``
    (the most active units, Burda, Grosse and Salakhutdinov 2016).
    """
    vae = _view(vae)
    if x is not None:
        _check_images(x, vae)
    if dims is None:
        if vae.latent_dim <= max_dims:
            dims = list(range(vae.latent_dim))
        elif x is not None and x.shape[0] > 1:
            dims = posterior_codes(vae, x).var(0).argsort(descending=True)[:max_dims].sort().values.tolist()
        else:
            dims = list(range(max_dims))
    bad = [d for d in dims if not 0 <= d < vae.latent_dim]
    if bad:
        raise DataError(f"dims must lie in [0, {vae.latent_dim}), got {bad}")
    probs = torch.linspace(0.05, 0.95, num_steps)
    values = _prior_quantiles(vae, probs)  # (steps, latent_dim)
    start = posterior_codes(vae, x[:1])[0] if x is not None else _prior_quantiles(vae, [0.5])[0]
    z = start.expand(len(dims), num_steps, -1).clone()
    for row, d in enumerate(dims):
        z[row, :, d] = values[:, d]
    images = vae.decode(z.flatten(0, 1))
    figsize = _grid_figsize(len(dims), num_steps, left=0.6)
    fig = Figure(figsize=figsize)
    origin = "the code of the first input" if x is not None else "the prior median"
    _show_grid(
        fig,
        images,
        num_steps,
        f"Latent traversals from {origin}: one dimension, prior quantiles 5% to 95%",
        figsize,
        left=0.6,
        row_labels=[f"z{d}" for d in dims],
    )
    return _save(fig, path, dpi)


@torch.no_grad()
def plot_interpolations(vae, x_start, x_end, path, num_steps=10, method="linear", dpi=100):
    """Decoded interpolations between the codes of pairs of inputs, one pair per row.

    Each row shows the first input, ``num_steps`` decodes from its code to the
    other's, and the second input. ``method`` is ``"linear"`` or ``"slerp"``
    (spherical, which keeps the norm of codes under a Gaussian prior typical;
    White 2016, "Sampling generative networks").

    :param x_start: images ``(N, C, H, W)``.
    :param x_end: images of the same shape.
    """
    vae = _view(vae)
    _check_images(x_start, vae, "x_start")
    _check_images(x_end, vae, "x_end")
    if x_start.shape != x_end.shape:
        raise DataError(
            f"x_start and x_end must have the same shape, got {tuple(x_start.shape)} and {tuple(x_end.shape)}"
        )
    if method not in ("linear", "slerp"):
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    a, b = posterior_codes(vae, x_start), posterior_codes(vae, x_end)
    t = torch.linspace(0, 1, num_steps, device=a.device)[None, :, None]
    if method == "linear":
        z = (1 - t) * a[:, None] + t * b[:, None]
    else:
        cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1 + 1e-7, 1 - 1e-7)
        omega = torch.acos(cos)[:, None, None]
        z = (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / torch.sin(omega)
    decoded = vae.decode(z.flatten(0, 1)).reshape((a.shape[0], num_steps) + x_start.shape[1:])
    images = torch.cat([x_start[:, None], decoded, x_end[:, None]], 1).flatten(0, 1)
    ncol = num_steps + 2
    figsize = _grid_figsize(a.shape[0], ncol)
    fig = Figure(figsize=figsize)
    _show_grid(
        fig, images, ncol, f"Interpolations ({method}) between the codes of two inputs (inputs at both ends)", figsize
    )
    return _save(fig, path, dpi)


@torch.no_grad()
def plot_manifold(vae, path, num=20, dpi=100):
    """The learned data manifold of a 2-D latent space (Kingma and Welling 2014, figure 4).

    Coordinates evenly spaced on the unit square are mapped through the
    inverse CDF of the prior (its quantiles 1/(2n) ... 1 - 1/(2n) along each
    axis), and the decoder's mean image is drawn at each, z1 left to right,
    z2 bottom to top.

    :raises DataError: if the latent space is not 2-D.
    """
    vae = _view(vae)
    if vae.latent_dim != 2:
        raise DataError(f"the manifold plot needs a 2-D latent space, got latent_dim = {vae.latent_dim}")
    probs = (torch.arange(num) + 0.5) / num
    q = _prior_quantiles(vae, probs)  # (num, 2)
    z1, z2 = q[:, 0], q[:, 1].flip(0)  # rows top to bottom: z2 decreasing
    z = torch.stack(torch.meshgrid(z2, z1, indexing="ij"), -1).flip(-1)  # (num, num, 2) = (z1, z2)
    images = vae.decode(z.reshape(-1, 2))
    figsize = (8.0 + 0.8, 8.0 + 0.35 + 0.5 + 0.2)
    fig = Figure(figsize=figsize)
    ax = _show_grid(
        fig,
        images,
        num,
        "Learned manifold: decoded means on a grid of prior quantiles",
        figsize,
        left=0.6,
        bottom=0.5,
        padding=0,
    )
    cell = images.shape[-1]
    ticks = sorted({0, num // 4, num // 2, (3 * num) // 4, num - 1})
    ax.set_xticks([cell * (i + 0.5) for i in ticks], [f"{z1[i]:.2f}" for i in ticks], fontsize=7)
    ax.set_yticks([cell * (i + 0.5) for i in ticks], [f"{z2[i]:.2f}" for i in ticks], fontsize=7)
    ax.set_xlabel("z1", fontsize=8, labelpad=1)
    ax.set_ylabel("z2", fontsize=8, labelpad=1)
    ax.tick_params(length=2, pad=1)
    return _save(fig, path, dpi)


@torch.no_grad()
def plot_latent_codes(vae, x, labels, path, class_names=None, figsize=(7.0, 6.0), dpi=100):
    """Posterior-mean codes of ``x`` in the plane, coloured by class.

    With a latent space of more than two dimensions the codes are projected on
    their first two principal components (the axes say so).

    :param x: images ``(N, C, H, W)``.
    :param labels: integer classes ``(N,)``.
    :param class_names: names of the classes, e.g. :data:`pyrogen.data.FASHION_MNIST_CLASSES`.
    """
    vae = _view(vae)
    _check_images(x, vae)
    labels = torch.as_tensor(labels).reshape(-1).cpu()
    if labels.shape[0] != x.shape[0]:
        raise DataError(f"labels must have one entry per image ({x.shape[0]}), got {labels.shape[0]}")
    z = posterior_codes(vae, x).float().cpu()
    if vae.latent_dim == 1:
        z, axes = torch.cat([z, torch.zeros_like(z)], 1), ("z1", "")
    elif vae.latent_dim == 2:
        axes = ("z1", "z2")
    else:
        centred = z - z.mean(0)
        _, s, v = torch.linalg.svd(centred, full_matrices=False)
        share = (s[:2] ** 2 / (s**2).sum()).tolist()
        z = centred @ v[:2].T
        axes = tuple(f"principal component {i + 1} ({100 * share[i]:.0f}% of variance)" for i in range(2))
    fig = Figure(figsize=figsize)
    ax = fig.add_axes([0.1, 0.09, 0.62, 0.83])
    colours = [f"C{i}" for i in range(10)]
    for c in labels.unique().tolist():
        mask = labels == c
        name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        ax.scatter(
            z[mask, 0], z[mask, 1], s=4, alpha=0.6, color=colours[c % 10], label=name, linewidths=0, rasterized=True
        )
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"Posterior means of {x.shape[0]} inputs, by class", fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), markerscale=3, frameon=False, fontsize=8)
    return _save(fig, path, dpi)


CURVE_PANELS = (
    (
        "nats per example",
        (("elbo", "ELBO"), ("log_px", "log p(x)"), ("iwae", "IWAE bound"), ("log_likelihood", "log p(x)")),
    ),
    ("nats per example", (("kl", "KL(q||p)"), ("rate", "rate"))),
    (
        "nats per example",
        (
            ("recon", "reconstruction"),
            ("reconstruction", "reconstruction"),
            ("nll", "reconstruction"),
            ("distortion", "distortion"),
        ),
    ),
    ("loss", (("loss", "loss"),)),
    (
        "nats",
        (
            ("mi", "mutual information I(x; z)"),
            ("mutual_info", "mutual information I(x; z)"),
            ("mutual_information", "mutual information I(x; z)"),
        ),
    ),
    ("count", (("active_units", "active units"), ("au", "active units"))),
    ("weight", (("kl_weight", "KL weight"), ("beta", "KL weight"))),
    ("learning rate", (("lr", "learning rate"),)),
    ("1 = on, 0 = off", (("aggressive", "aggressive training"),)),
    ("distance", (("fid", "Fréchet distance"), ("kid", "kernel distance"))),
    ("share", (("precision", "precision"), ("recall", "recall"), ("density", "density"), ("coverage", "coverage"))),
    ("score", (("is", "inception score"),)),
)
"""Training-curve panels, one quantity (one unit) each: ``(y-axis unit, ((name part, label), ...))``.

A column goes into the panel of the longest part that appears in its name
as whole underscore-separated words (``test_kl`` and ``kl_train`` go into
the KL panel, ``test_kl_weight`` into the KL weight's, ``test_log_px`` into
the ELBO panel), so columns added later by other models find their panel.
A panel's title names the quantities of the columns it holds, and nothing else.
"""

_NOT_CURVES = {"epoch", "step", "seconds", "time", "method"}
_ROLES = {"d": "discriminator", "g": "generator", "train": "train", "test": "test"}


def _curve_label(column, part, label):
    """A legend entry: ``test_elbo`` -> "test ELBO", ``loss_d`` -> "discriminator loss"."""
    words = f"_{column}_".replace(f"_{part}_", "_", 1).strip("_").split("_")
    roles = [_ROLES.get(w.lower(), w) for w in words if w]
    return " ".join(roles + [label])


def curve_panels(columns):
    """Group metric columns into panels of :data:`CURVE_PANELS`.

    :returns: a list of ``(title, y-axis unit, [(column, legend label), ...])``, only for panels
        with columns; the title lists the quantities present (e.g. "ELBO", or "ELBO and log p(x)").
    """
    panels = [[] for _ in CURVE_PANELS]
    for col in columns:
        if col in _NOT_CURVES:
            continue
        name = f"_{col.lower()}_"
        matches = [
            (len(part), -i, i, part, label)
            for i, (_, parts) in enumerate(CURVE_PANELS)
            for part, label in parts
            if f"_{part}_" in name
        ]
        if matches:
            _, _, i, part, label = max(matches)
            panels[i].append((col, part, label))
    out = []
    for (unit, _), members in zip(CURVE_PANELS, panels):
        if not members:
            continue
        quantities = list(dict.fromkeys(label for _, _, label in members))
        title = " and ".join(quantities)
        if unit == "loss":
            title = "losses" if len(members) > 1 else "loss"
        out.append((title[0].upper() + title[1:], unit, [(c, _curve_label(c, p, lab)) for c, p, lab in members]))
    return out


def plot_training_curves(rows, path, figsize=None, dpi=100):
    """Training curves from the rows of ``metrics.csv``, one panel per quantity.

    Plots whichever known columns exist (see :data:`CURVE_PANELS`) against
    the epoch (or the row number when there is no ``epoch`` column), one
    quantity and unit per axis, with readable legends and whole-number epochs.
    Panels fill two columns; an odd last panel spans both, so no panel is empty.

    :param rows: list of dicts (:meth:`pyrogen.runs.RunDir.read_metrics`) or a run directory.
    :param figsize: inches; default 5.5 wide per panel, in up to two columns, 3.6 high per row.
    :raises DataError: if there are no rows or no known numeric column.
    """
    if isinstance(rows, (str, os.PathLike)):
        from pyrogen.files import RunDir

        rows = RunDir(rows).read_metrics()
    if not rows:
        raise DataError("no metrics to plot: metrics.csv is missing or empty")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    numeric = [
        c
        for c in columns
        if any(
            isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) and math.isfinite(r.get(c))
            for r in rows
        )
    ]
    panels = curve_panels(numeric)
    if not panels:
        raise DataError(f"metrics.csv has no column to plot (columns: {', '.join(columns)})")
    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    figsize = figsize or (5.5 * ncols, 3.6 * nrows)
    fig = Figure(figsize=figsize, layout="constrained")
    grid = fig.add_gridspec(nrows, ncols)
    axes = [
        fig.add_subplot(
            grid[i // ncols, i % ncols] if not (i == len(panels) - 1 and i % ncols == 0) else grid[i // ncols, :]
        )
        for i in range(len(panels))
    ]
    xname = "epoch" if "epoch" in columns else None
    xs_all = set()
    for ax, (title, unit, members) in zip(axes, panels):
        ys_all = []
        for col, label in members:
            pts = [
                (r[xname] if xname else i + 1, r[col])
                for i, r in enumerate(rows)
                if isinstance(r.get(col), (int, float))
                and math.isfinite(r.get(col))
                and (not xname or isinstance(r.get(xname), (int, float)))
            ]
            if pts:
                xs, ys = zip(*pts)
                xs_all.update(xs)
                ys_all += ys
                ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, markersize=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xname or "row")
        ax.set_ylabel(unit)
        if unit == "count" and ys_all and max(ys_all) - min(ys_all) < 4:  # whole counts, not 0.945..1.050
            ax.set_yticks(range(math.floor(min(ys_all)) - 1, math.ceil(max(ys_all)) + 2))
        elif unit == "count":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    lo, hi = (min(xs_all), max(xs_all)) if xs_all else (1, 1)
    for ax in axes:
        if hi - lo <= 12:  # few epochs: a tick at each, and a margin of half an epoch
            ax.set_xticks(range(math.floor(lo), math.ceil(hi) + 1))
            ax.set_xlim(lo - 0.5, hi + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path, dpi)


PLOTS_DIR = "plots"
"""Folder of a run directory where :func:`plot_run` writes its pictures."""


@torch.no_grad()
def _new_folder(path):
    """Make and return ``path``, or ``path-2``, ``path-3``, ... if taken (an empty folder is used as it is)."""
    for n in range(1, 10_000):
        candidate = path if n == 1 else f"{path}-{n}"
        try:
            os.mkdir(candidate)  # claims the name: two plots at once get two folders
            return candidate
        except FileExistsError:
            if os.path.isdir(candidate) and not os.path.islink(candidate) and not os.listdir(candidate):
                return candidate
    raise DataError(f"{path!r}: 9,999 folders of pictures exist already; pass --out for another folder")


def plot_run(run_dir, out_dir=None, device="auto", seed=0, num_points=5000, dpi=100):
    """Every picture of a run: what ``pyrogen plot RUN_DIR`` writes.

    For a VAE run: ``reconstructions.png``, ``prior_samples.png``,
    ``latent_traversals.png``, ``interpolations.png`` (pairs of test images), ``manifold.png`` (2-D
    latent spaces only), ``latent_codes.png`` (the first ``num_points`` test
    images) and ``training_curves.png``; for other kinds of run the training
    curves only. Test images are the run's own (binarized as in training). A VAE of examples that are
    not images (a table, a count matrix) gets ``latent_codes.png``, ``feature_reconstruction.png``
    and ``training_curves.png`` (:mod:`pyrogen.plotting_tables`).

    Nothing is replaced: by default the pictures go to ``RUN_DIR/plots``, or, where an earlier
    ``pyrogen plot`` filled it, to the first free ``plots-2``, ``plots-3``, ...; in a given
    ``out_dir`` a name already taken becomes ``NAME-2.png``, ``NAME-3.png``, ...

    :param out_dir: where to write (default: a new ``RUN_DIR/plots`` folder, as above).
    :param int seed: seeds the prior draws, so the pictures are reproducible.
    :returns: list of the paths written.
    """
    import pyro

    from pyrogen.data import FASHION_MNIST_CLASSES
    from pyrogen.files import unused_path
    from pyrogen.rundirs import open_run

    run = open_run(run_dir, device)
    if out_dir is None:
        folder = []

        def new_name(_, name):  # the folder is made with the first picture, after the model loaded
            if not folder:
                folder.append(_new_folder(run.dir.file(PLOTS_DIR)))
            return os.path.join(folder[0], name)
    else:
        out_dir = os.fspath(out_dir)

        def new_name(folder, name):
            return unused_path(os.path.join(folder, name))

    paths = []
    rows = run.dir.read_metrics()  # read (and checked) before any picture is drawn
    model = run.model() if run.record.configured and run.record.vae_pair else None
    if model is not None and not is_image_shape(getattr(model, "image_shape", (1, 1, 1))):
        _, test, labels = run.data()  # a table or a count matrix: no image grids (inapplicable_pictures says why)
        pyro.set_rng_seed(seed)
        paths += plot_table_pictures(
            model, test, lambda name: new_name(out_dir, name), labels, num_points=num_points, dpi=dpi
        )
    elif model is not None:  # a VAE, or the VAE pair ALI and the AAE train
        vae = _view(model)
        _, test, labels = run.data()
        pyro.set_rng_seed(seed)
        pick = torch.randperm(test.shape[0], device="cpu").to(test.device)
        pairs = min(8, test.shape[0] // 2)
        paths.append(plot_reconstructions(vae, test[pick[:16]], new_name(out_dir, "reconstructions.png"), dpi=dpi))
        paths.append(plot_prior_samples(vae, new_name(out_dir, "prior_samples.png"), dpi=dpi))
        paths.append(
            plot_latent_traversals(vae, new_name(out_dir, "latent_traversals.png"), x=test[:num_points], dpi=dpi)
        )
        if pairs:
            paths.append(
                plot_interpolations(
                    vae,
                    test[pick[:pairs]],
                    test[pick[pairs : 2 * pairs]],
                    new_name(out_dir, "interpolations.png"),
                    dpi=dpi,
                )
            )
        if vae.latent_dim == 2:
            paths.append(plot_manifold(vae, new_name(out_dir, "manifold.png"), dpi=dpi))
        source = run.source or {}
        if source.get("kind") not in (None, "fashion-mnist", "built-in"):  # your own data: their class names
            names = source.get("class_names")
        else:
            names = FASHION_MNIST_CLASSES if run.settings.data.dataset == "fashion-mnist" else None
        if labels is not None:  # data without labels have no codes-by-class picture
            paths.append(
                plot_latent_codes(
                    vae,
                    test[:num_points],
                    labels[:num_points],
                    new_name(out_dir, "latent_codes.png"),
                    class_names=names,
                    dpi=dpi,
                )
            )
    if rows:
        paths.append(plot_training_curves(rows, new_name(out_dir, "training_curves.png"), dpi=dpi))
    return paths


def plot_posterior_mean_space(panels, path, row_labels=None, cell=2.6, limit=None, dpi=100):
    """He et al.'s (ICLR 2019, Figures 1 and 3) posterior mean space: E_q[z|x] against E_p[z|x].

    One scatter panel per training point and method: x-axis the inference
    network's posterior mean :math:`\\mathbb{E}_{q(z|x)}[z]`, y-axis the
    model's :math:`\\mathbb{E}_{p(z|x)}[z]` (first latent coordinate), with the
    diagonal drawn; points on it mean the inference network has caught up,
    points along the y-axis a lagging one, all points at the origin collapse.
    Compute the points with :func:`pyrogen.evaluation.posterior_mean.posterior_mean_space`
    (latents of 1 dimension by grid integration, 2 or more by importance sampling).

    :param panels: ``{row: {column title: points}}`` (e.g. rows ``"standard"`` and
        ``"aggressive"``, columns ``"iter 200"`` ...), or ``{column title: points}``
        for one row, or a single ``points`` dict; ``points`` has ``"q_mean"`` and
        ``"p_mean"`` (1-d tensors or arrays of the same length).
    :param limit: half-width of both axes (default: from the data, at least 0.5).
    :returns: ``path``.
    """
    if "q_mean" in panels:
        panels = {"": {"": panels}}
    elif all(isinstance(v, dict) and "q_mean" in v for v in panels.values()):
        panels = {"": panels}
    rows = list(panels)
    cols = max((len(v) for v in panels.values()), default=0)
    if not rows or not cols:
        raise DataError("plot_posterior_mean_space needs at least one panel")
    nrows = len(rows)

    def values(a):
        return torch.as_tensor(a, dtype=torch.float64).reshape(-1)

    if limit is None:
        extent = max(
            (
                max(values(p["q_mean"]).abs().max().item(), values(p["p_mean"]).abs().max().item())
                for r in rows
                for p in panels[r].values()
            ),
            default=0.5,
        )
        limit = max(0.5, 1.05 * extent)
    fig = Figure(figsize=(cols * cell + 0.6, nrows * cell + 0.4))
    axes = fig.subplots(nrows, cols, squeeze=False)
    for i, r in enumerate(rows):
        titles = list(panels[r])
        for j in range(cols):
            ax = axes[i][j]
            if j >= len(titles):
                ax.axis("off")
                continue
            p = panels[r][titles[j]]
            ax.plot([-limit, limit], [-limit, limit], color="0.6", lw=0.8, zorder=0)
            ax.scatter(
                values(p["q_mean"]).numpy(),
                values(p["p_mean"]).numpy(),
                s=4,
                alpha=0.5,
                color="C0" if i == 0 else f"C{i % 10}",
                linewidths=0,
            )
            ax.set_xlim(-limit, limit)
            ax.set_ylim(-limit, limit)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
            label = row_labels[i] if row_labels else r
            ax.set_title(" ".join(s for s in (label, titles[j]) if s), fontsize=8)
            if i == len(rows) - 1:
                ax.set_xlabel("E_q[z|x] (approximate)", fontsize=7)
            if j == 0:
                ax.set_ylabel("E_p[z|x] (model)", fontsize=7)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.1, top=0.93, wspace=0.35, hspace=0.45)
    return _save(fig, path, dpi)
