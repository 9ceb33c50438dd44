"""One self-contained HTML page about a run: results first (evaluation, curves, pictures, metrics), then settings.

``pyrogen report RUN_DIR`` writes ``RUN_DIR/report.html`` (or, when an earlier
report is there, the first free ``report-2.html``, ``report-3.html``, ...: no
report replaces another). The page needs nothing but a browser: the style is
inline and every picture is embedded as a base64 ``data:`` URI, so it reads
offline and survives being mailed or copied on its own. The training curves
are drawn afresh from ``metrics.csv``; the other pictures are the PNG files
already in the run directory and in the latest of its ``plots/``,
``plots-2/``, ... folders (``pyrogen plot RUN_DIR`` makes them). The settings
section lists those that differ from what ``pyrogen train KIND`` uses without
options, with the full table folded below. Every file is read through
:meth:`pyrogen.files.RunDir.open_file`: nothing is read through a link that
leaves the run directory.
"""

import base64
import datetime
import glob
import html
import json
import numbers
import os
import re
import tempfile

from pyrogen.errors import DataError, RunDirError, RunFileError
from pyrogen.files import EVALUATIONS_DIR, atomic_write, check_not_run_file
from pyrogen.kinds.base import RunKind
from pyrogen.rundirs import BUILT_IN_KINDS, open_run
from pyrogen.settings import VAETrainConfig, migrate, written_section

SECTIONS = ("Evaluation", "Training curves", "Pictures", "Metrics", "Settings")
"""The page's sections, in order (results first); each is an ``<h2>`` with an ``id`` of its name in lower case."""

REPORT_FILE = "report.html"
PLOTS_DIR = "plots"

CAPTIONS = {
    "reconstructions.png": "Inputs and their reconstructions.",
    "prior_samples.png": "Mean images of draws from the prior p(z).",
    "latent_traversals.png": "Latent traversals: one latent dimension at a time, over its prior quantiles.",
    "interpolations.png": "Decoded interpolations between the codes of pairs of test inputs.",
    "manifold.png": "The learned manifold of the 2-D latent space, decoded on a grid of prior "
    "quantiles (Kingma and Welling 2014, figure 4).",
    "latent_codes.png": "Posterior means of test inputs, coloured by class.",
}
_ORDER = list(CAPTIONS)
TRAINING_CAPTIONS = {
    "samples.png": "Mean images of draws from the prior p(z), written by pyrogen train at the end of training.",
    "reconstructions.png": "Test inputs and their reconstructions (each row of inputs above its row of "
    "reconstructions), written by pyrogen train at the end of training.",
}
SUPERSEDED_BY_PLOTS = {"samples.png": "prior_samples.png", "reconstructions.png": "reconstructions.png"}
"""Training's grids that ``pyrogen plot`` draws again: the report shows one picture of each kind."""
_SAMPLE_NAME = re.compile(r"samples-epoch(\d+)-n(\d+)-seed(-?\d+)(?:-(\d+))?\.png$")

PSIS_LABELS = {
    "share_above_threshold": "share of examples with k-hat above the threshold",
    "share_good": "share of examples with k-hat below 0.5",
    "threshold": "threshold",
    "khat_median": "median k-hat",
    "khat_max": "largest k-hat",
    "num_examples": "test examples",
}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td.key, th.key { text-align: left; }
.scroll { overflow-x: auto; max-height: 30em; overflow-y: auto; }
.warning { background: #fff3cd; border-left: 4px solid #e0a800; padding: .6em 1em; }
.note { color: #666; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: .9em; }
"""


def _esc(value):
    return html.escape(str(value), quote=True)


def _fmt(value):
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _flatten(obj, prefix=""):
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}{k}.")
        return out
    return [(prefix[:-1], obj)]


def _key_value_table(pairs, key="setting"):
    rows = "".join(f"<tr><td class='key'>{_esc(k)}</td><td class='key'>{_esc(_fmt(v))}</td></tr>" for k, v in pairs)
    return f"<table><tr><th class='key'>{_esc(key)}</th><th class='key'>value</th></tr>{rows}</table>"


def _img(png_bytes, alt):
    data = base64.b64encode(png_bytes).decode("ascii")
    return f"<img alt='{_esc(alt)}' src='data:image/png;base64,{data}'>"


def _section(title, body):
    return f"<section><h2 id='{title.lower().replace(' ', '-')}'>{_esc(title)}</h2>\n{body}\n</section>"


KL_SCHEDULE_OPTIONS = {
    "constant": {"kl_warmup_epochs", "kl_start", "kl_cycles"},
    "linear": {"kl_weight", "kl_cycles"},
    "cyclical": {"kl_weight", "kl_warmup_epochs", "kl_start"},
}
"""The options of the KL schedules that a schedule does not use (:mod:`pyrogen.infer.kl_schedule`)."""


def _unused_and_built_in(config):
    """``(training settings that did not shape the run, whether its data are a built-in data set)``, read
    through :func:`~pyrogen.settings.migrate`. A configuration that migrate refuses (edited by hand) hides
    no setting: it is listed whole, and its data count as built in unless it records a source of another kind."""
    try:
        settings = migrate(config)
    except DataError:
        source = written_section(written_section(config, "data"), "source")
        return set(), not source or source.get("kind") in BUILT_IN_KINDS
    train, source, unused = settings.train, settings.data.source_record, set()
    if isinstance(train, VAETrainConfig):  # the VAE family's: KL schedules and aggressive training
        if isinstance(train.kl_schedule, str):
            unused |= KL_SCHEDULE_OPTIONS.get(train.kl_schedule, set())
        if not train.aggressive:
            unused.add("aggressive_patience")
    elif train.loss != "wgan-gp":  # an adversarial game's: the gradient penalty is WGAN-GP's
        unused.add("gp_weight")
    return unused, source is None or source["kind"] in BUILT_IN_KINDS


def _used_pairs(config):
    """``(key, value)`` of the settings that shaped the run, keys as flattened (``"train.epochs"``)."""
    unused, built_in = _unused_and_built_in(config)

    def shown(k):  # a recorded source by what it is (not its hashes); the built-in data set's by data.dataset
        if k.startswith("data.source."):
            return not built_in and not k.startswith(("data.source.fingerprint.", "data.source.format"))
        return k != "version" and not (k.startswith("train.") and k[len("train.") :] in unused)

    return [(k, v) for k, v in _flatten(config) if v is not None and shown(k)]


_LABELS = {"eval.num_samples": "eval.num_samples (K of the evaluation at the end of training)"}


def used_settings(config):
    """``(key, value)`` pairs of the settings that shaped the run: unset (None) values and the options
    of schedules and modes the run did not use are left out."""
    return [(_LABELS.get(k, k), v) for k, v in _used_pairs(config)]


def default_settings(config):
    """The configuration that ``pyrogen train KIND`` writes without options, for the kind of ``config``
    (a class-conditional GAN: the conditional one), or None where pyrogen knows no defaults for it."""
    from pyrogen.errors import PyrogenError
    from pyrogen.kinds import get_kind
    from pyrogen.settings import kind_of

    try:
        record = get_kind(kind_of(config))
    except PyrogenError:  # an unknown kind: the full table only
        return None
    if record.defaults_like is None:
        return None
    return json.loads(json.dumps(record.defaults_like(config)))  # tuples as lists, as config.json holds them


def changed_settings(config):
    """``(key, value, default)`` of the settings in :func:`used_settings` that differ from
    :func:`default_settings` (default None where the kind's defaults lack the key); None without defaults."""
    defaults = default_settings(config)
    if defaults is None:
        return None
    flat = dict(_flatten(defaults))
    missing = object()
    return [
        (_LABELS.get(k, k), v, flat.get(k))
        for k, v in _used_pairs(json.loads(json.dumps(config)))
        if flat.get(k, missing) != v
    ]


def _settings(config, record):
    kind = record.name
    full = used_settings(config)
    changed = changed_settings(config)
    folded = f"<details><summary>All {len(full)} settings</summary>{_key_value_table(full)}</details>"
    if changed is None:
        return f"<p class='note'>No defaults are known for runs of kind {_esc(kind)}.</p>{_key_value_table(full)}"
    command = record.usage
    if not changed:
        head = f"<p>Every setting is the default of <code>pyrogen train {_esc(command)}</code>.</p>"
    else:
        rows = "".join(
            f"<tr><td class='key'>{_esc(k)}</td><td class='key'>{_esc(_fmt(v))}</td>"
            f"<td class='key'>{_esc('unset' if d is None else _fmt(d))}</td></tr>"
            for k, v, d in changed
        )
        head = (
            f"<p>The settings that differ from the defaults of <code>pyrogen train {_esc(command)}</code>:</p>"
            "<table><tr><th class='key'>setting</th><th class='key'>value</th><th class='key'>default</th>"
            f"</tr>{rows}</table>"
        )
    return head + folded


def _evaluations(run, prefix):
    """The run's evaluation files of one kind, oldest checkpoint first: ``[(relative path, dict)]``."""
    found = []
    for path in glob.glob(os.path.join(run.path, EVALUATIONS_DIR, f"{prefix}*.json")):
        rel = os.path.relpath(path, run.path)
        found.append((rel, _read_evaluation(run, rel)))
    if prefix == "log-px" and os.path.isfile(run.file("evaluation.json")):  # the single file of older runs
        found.append(("evaluation.json", _read_evaluation(run, "evaluation.json")))
    return sorted(found, key=lambda f: (f[1].get("epoch", 0), f[1].get("num_samples", 0), f[0]))


_WHOLE = ("epoch", "num_samples", "seed", "num_examples", "num_fake", "num_real", "k")
_FIGURES = ("elbo", "objective", "log_px", "frechet_distance", "precision", "recall")


def _read_evaluation(run, rel):
    """One evaluation file as a dict; a file that is not the JSON object pyrogen wrote is one line.

    :raises RunFileError: for a link leaving the run, or a file that is not UTF-8 JSON.
    :raises DataError: for JSON that is not an evaluation, or whose counts or figures have other types.
    """
    result = run.read_json(rel)
    if not isinstance(result, dict) or not isinstance(result.get("psis", {}), dict):
        raise DataError(
            f"{run.file(rel)!r} holds no evaluation (expected the JSON object "
            "'pyrogen evaluate' writes); rewrite it with 'pyrogen evaluate'"
        )
    for key in _WHOLE:
        value = result.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool):
            raise DataError(
                f"{run.file(rel)!r} holds {key} = {json.dumps(value)[:40]}; expected a whole number "
                "(the JSON object 'pyrogen evaluate' writes); rewrite it with 'pyrogen evaluate'"
            )
    for key in _FIGURES:
        value = result.get(key, 0.0)
        if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)):
            raise DataError(
                f"{run.file(rel)!r} holds {key} = {json.dumps(value)[:40]}; expected a number "
                "(the JSON object 'pyrogen evaluate' writes); rewrite it with 'pyrogen evaluate'"
            )
    return result


def _written(result):
    who = result.get("written_by", "an older pyrogen")
    when = result.get("written_at")
    return f"written by {who}" + (f" on {when}" if when else "")


def _evaluation(run, record):
    results = _evaluations(run, "log-px")
    quality = _evaluations(run, "sample-quality")
    if not record.has_density and not quality:
        return (
            "<p class='note'>No sample-quality scores yet: run <code>pyrogen sample-quality "
            f"{_esc(run.path)}</code> (Fréchet distance, precision and recall; a GAN's generator has no "
            "density, so no ELBO or log p(x)).</p>"
        )
    if record.evaluate is None and record.conditional and not results and not quality:
        return (
            "<p class='note'>No evaluation: <code>pyrogen evaluate</code> does not take conditional VAE runs "
            "yet; their test ELBO given the labels is the test_elbo column of the metrics below.</p>"
        )
    if not results and not quality:
        return f"<p class='note'>No evaluation yet: run <code>pyrogen evaluate {_esc(run.path)}</code>.</p>"
    body = ""
    if not results and record.evaluate is not None:
        what = "test objective" if record.evaluate == "objective" else "log p(x)"
        body = f"<p class='note'>No {what} yet: run <code>pyrogen evaluate {_esc(run.path)}</code>.</p>"
    labels = {
        "elbo": "test ELBO (nats per example)",
        "objective": "test objective (nats per example)",
        "log_px": "importance-sampled log p(x) (nats per example)",
    }
    for rel, result in results:
        result = dict(result)
        psis = result.pop("psis", None)
        k, epoch = result.get("num_samples"), result.get("epoch")
        heading = f"K = {k}" + ("" if k else " (test ELBO only)")
        if "seed" in result:
            heading += f", seed {result['seed']}"
        if "num_examples" in result:
            heading += f", {result['num_examples']} test images"
        body += f"<h3>{_esc(heading)}, checkpoint of epoch {_esc(epoch)}</h3>"
        body += f"<p class='note'><code>{_esc(rel)}</code>, {_esc(_written(result))}.</p>"
        body += _key_value_table([(labels[key], result[key]) for key in labels if key in result], key="figure")
        if psis:
            advice = psis.pop("advice", None)
            body += "<h4>Pareto k&#770; of the importance weights (PSIS)</h4>"
            body += (
                "<p>Above 0.7 an example's importance-sampled log p(x) is not to be trusted "
                "(Yao, Vehtari, Simpson and Gelman 2018).</p>"
            )
            body += _key_value_table([(PSIS_LABELS.get(k, k), v) for k, v in psis.items()], key="figure")
            if advice:
                body += f"<p class='warning'>{_esc(advice)}</p>"
    if quality:
        body += "<h3>Sample quality (pyrogen sample-quality)</h3>"
        cols = [
            ("epoch", "checkpoint of epoch"),
            ("num_fake", "samples"),
            ("num_real", "test images"),
            ("seed", "seed"),
            ("frechet_distance", "Fréchet distance"),
            ("precision", "precision"),
            ("recall", "recall"),
            ("k", "k"),
            ("feature_net", "feature network"),
        ]
        head = "".join(f"<th>{_esc(label)}</th>" for _, label in cols) + "<th class='key'>file</th>"
        rows = "".join(
            "<tr>"
            + "".join(f"<td>{_esc(_fmt(r.get(c, '')))}</td>" for c, _ in cols)
            + f"<td class='key'><code>{_esc(rel)}</code>, {_esc(_written(r))}</td></tr>"
            for rel, r in quality
        )
        body += f"<div class='scroll'><table><tr>{head}</tr>{rows}</table></div>"
    return body


def _picture_caption(name, record=None):
    """The caption of a picture in the run directory itself, from its name (samples of a kind with no density,
    a GAN's, are G(z))."""
    if isinstance(record, str):  # a kind's name
        from pyrogen.kinds import get_kind

        record = get_kind(record)
    implicit = record is not None and not record.has_density
    if implicit and name == "samples.png":
        return "Samples G(z) of the generator, z ~ p(z), written by pyrogen train at the end of training."
    if name in TRAINING_CAPTIONS:
        return TRAINING_CAPTIONS[name]
    match = _SAMPLE_NAME.match(name)
    if match:
        epoch, n, seed, _ = match.groups()
        what = (
            f"{n} samples G(z) of the generator, z ~ p(z)"
            if implicit
            else f"Mean images of {n} draws from the prior p(z)"
        )
        return f"{what}, seed {seed}, checkpoint of epoch {epoch}, written by pyrogen sample."
    return ""


def _metrics(rows):
    if not rows:
        return "<p class='note'>No metrics.csv in the run.</p>"
    cols = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_esc(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _curves(rows):
    from pyrogen.plotting import plot_training_curves

    if not rows:
        return "<p class='note'>No metrics to plot.</p>"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = plot_training_curves(rows, os.path.join(tmp, "curves.png"))
        except DataError as e:
            return f"<p class='note'>{_esc(e)}</p>"
        with open(path, "rb") as f:
            return f"<figure>{_img(f.read(), 'training curves')}</figure>"


def plot_folders(run):
    """The run's folders of ``pyrogen plot`` pictures, earliest first: ``plots``, ``plots-2``, ..."""
    found = []
    for name in os.listdir(run.path):
        match = re.fullmatch(re.escape(PLOTS_DIR) + r"(?:-(\d+))?", name)
        if match and os.path.isdir(run.file(name)) and not os.path.islink(run.file(name)):
            found.append((int(match.group(1) or 1), name))
    return [name for _, name in sorted(found)]


def _pictures(run, record):
    def rank(name):
        return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)

    folders = plot_folders(run)
    latest = folders[-1] if folders else PLOTS_DIR
    plots = [
        p for p in glob.glob(os.path.join(run.path, latest, "*.png")) if os.path.basename(p) != "training_curves.png"
    ]
    pictures = [
        (p, CAPTIONS.get(os.path.basename(p), "")) for p in sorted(plots, key=lambda p: rank(os.path.basename(p)))
    ]
    drawn_again = {os.path.basename(p) for p in plots}
    pictures += [
        (p, _picture_caption(os.path.basename(p), record))
        for p in sorted(glob.glob(os.path.join(run.path, "*.png")))
        if SUPERSEDED_BY_PLOTS.get(os.path.basename(p)) not in drawn_again
    ]
    figures = []
    if not folders and record.vae_pair:
        figures.append(f"<p class='note'>Run <code>pyrogen plot {_esc(run.path)}</code> for more pictures.</p>")
    elif len(folders) > 1:
        figures.append(
            f"<p class='note'>The pictures of the latest <code>pyrogen plot</code>, in "
            f"<code>{_esc(latest)}/</code>; earlier ones are in "
            f"{', '.join(f'<code>{_esc(f)}/</code>' for f in folders[:-1])}.</p>"
        )
    if record.vae_pair:
        figures.append(_inapplicable(run.config["model"]))
    for path, caption in pictures:
        rel = os.path.relpath(path, run.path)
        try:  # only the run's own pictures: a symbolic link could point anywhere (a system file, say)
            if os.path.islink(path):
                continue
            with run.open_file(rel) as f:
                img = _img(f.read(), rel)
        except RunFileError:
            continue
        figures.append(f"<figure>{img}<figcaption><code>{_esc(rel)}</code> {_esc(caption)}</figcaption></figure>")
    return "\n".join(figures) or "<p class='note'>No pictures.</p>"


def _inapplicable(model):
    """A note on the picture kinds that do not apply to a VAE pair's data, and why (empty if all apply)."""
    from pyrogen.plotting_tables import inapplicable_pictures

    try:  # the model's own settings, which every model's configuration holds (two layers: latent_dims)
        shape = model["image_shape"]
        latent_dim = model["latent_dims"][0] if "latent_dims" in model else model["latent_dim"]
    except (KeyError, IndexError, TypeError):
        return ""  # a hand-edited configuration: the report lists it in the settings, it draws no conclusions
    whole = (int,)
    if not (
        isinstance(shape, (list, tuple))
        and all(isinstance(n, whole) for n in shape)
        and (latent_dim is None or isinstance(latent_dim, whole))
    ):
        return ""  # a hand-edited configuration: the report lists it in the settings, it draws no conclusions
    skipped = inapplicable_pictures(shape, latent_dim)
    if not skipped:
        return ""
    return (
        "<p class='note'>Pictures that do not apply to this run: "
        + "; ".join(f"<code>{_esc(name)}</code>: {_esc(reason)}" for name, reason in skipped)
        + ".</p>"
    )


def _plural(count, word):
    return f"{count} {word}" + ("" if count == 1 else "s")


def build_report(run_dir):
    """The HTML page of a run, as a string (see :data:`SECTIONS`).

    :raises RunDirError: if ``run_dir`` holds no run, or holds the feature network's cache.
    :raises RunFileError: if a file of the run is a link that leaves it, or is not what pyrogen wrote.
    """
    opened = open_run(run_dir, device="cpu")  # the report reads files only: no model, no checkpoint
    if not opened.record.configured:
        raise RunDirError(
            f"{opened.path!r} holds the feature network's cache, not a training run; its test "
            "accuracy is in its manifest ('pyrogen train features' prints it)"
        )
    run = opened.dir
    config = run.config
    try:
        record = opened.record
    except RunDirError:  # a kind this pyrogen does not know: its files, without advice
        record = RunKind(name=str(opened.kind), command=str(opened.kind), evaluate=None, vae_pair=False)
    rows = run.read_metrics()
    title = f"pyrogen run: {record.name} in {os.path.abspath(run.path)}"
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    bodies = {
        "Evaluation": _evaluation(run, record),
        "Training curves": _curves(rows),
        "Pictures": _pictures(run, record),
        "Metrics": _metrics(rows),
        "Settings": _settings(config, record),
    }
    sections = [_section(title_, bodies[title_]) for title_ in SECTIONS]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>\n"
        f"<h1>{_esc(title)}</h1><p class='note'>Written {_esc(stamp)} by <code>pyrogen report</code>; "
        f"{_plural(len(rows), 'epoch')} recorded.</p>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def write_report(run_dir, out=None):
    """Write :func:`build_report`'s page atomically; returns its path. Nothing is replaced.

    :param out: the HTML file; by default ``RUN_DIR/report.html``, or where an earlier report is
        there the first free ``report-2.html``, ``report-3.html``, ...
    :raises RunDirError: if ``out`` exists already, or is one of a run's own files.
    """
    page = build_report(run_dir).encode("utf-8")
    if out is not None:
        out = os.fspath(out)
        check_not_run_file(out)
        try:
            atomic_write(out, lambda f: f.write(page), replace=False)
        except FileExistsError:
            raise RunDirError(
                f"--out {out!r} exists already; expected a new file name (an earlier report is never replaced)"
            ) from None
        return out
    stem, ext = os.path.splitext(os.path.join(os.fspath(run_dir), REPORT_FILE))
    for n in range(1, 10_000):
        out = stem + ("" if n == 1 else f"-{n}") + ext
        try:
            atomic_write(out, lambda f: f.write(page), replace=False)  # claims the name, or finds it taken
            return out
        except FileExistsError:
            continue
    raise RunDirError(f"{os.fspath(run_dir)!r} holds 9,999 reports already; pass --out for another file")
