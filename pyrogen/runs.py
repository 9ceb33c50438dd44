"""Runs: train, resume, evaluate, sample, plot and report a run; what the ``pyrogen`` commands do.

The functions here are what the ``pyrogen`` commands do, callable from Python:
:func:`train` (a new run: build, fit, the kind's steps after training),
:func:`resume` (the resume policy), :func:`evaluate`, :func:`sample`,
:func:`sample_quality`, :func:`plot` and :func:`report`. Each looks the run's kind
up in :mod:`pyrogen.kinds` and builds or resumes through the one generic
:func:`build_trainer` and :func:`resume_trainer`. They print their lines through
``echo`` (``print`` by default).

Opening a run (:func:`open_run`, :class:`Run`), the data loaders and the run files are
:mod:`pyrogen.rundirs` and :mod:`pyrogen.files`; their names are re-exported here.
"""

import datetime
import json
import os
import sys

import torch

from pyrogen import distributed
from pyrogen.data.sources import relocated
from pyrogen.errors import DataError, PyrogenError, RunDirError, RunFileError
from pyrogen.kinds import get_kind
from pyrogen.rundirs import (  # noqa: F401  (re-exported: pyrogen.runs is where users find runs)
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    CONFIG_FILE,
    DATA_LOADERS,
    FEATURES,
    METRICS_FILE,
    RESUMABLE_KEYS,
    Run,
    RunDir,
    atomic_write,
    build_trainer,
    load_checkpoint,
    load_data,
    load_gan_data,
    load_generator,
    load_labelled_data,
    load_model,
    load_run_data,
    load_trainer,
    open_run,
    read_splits,
    remove_stale_temporaries,
    resolve_device,
    resume_trainer,
    rng_state,
    save_checkpoint,
    set_rng_state,
    start_run,
    with_source,
)
from pyrogen.settings import lacking_sections, migrate


def _record_epochs(run, total):
    """Write ``total`` as the run's ``train.epochs`` into its ``config.json`` (the rest as it was; the
    bytes :meth:`RunDir.write_json <pyrogen.files.RunDir.write_json>` writes, written as bytes)."""
    config = run.dir.config
    if config["train"]["epochs"] != total:
        config["train"]["epochs"] = total
        run.dir.resolve(CONFIG_FILE, "write")  # never through a link that leaves the run
        text = json.dumps(config, indent=2, sort_keys=True)
        atomic_write(run.dir.file(CONFIG_FILE), lambda f: f.write(text.encode("utf-8")), binary=True)


def _checkpoint_epochs(run):
    """The total of epochs in the configuration embedded in the run's checkpoint (0 where unreadable)."""
    try:
        return migrate(run.dir.load_checkpoint(map_location="cpu")["config"]).train.epochs
    except (KeyError, TypeError, DataError):
        return 0


def _open_for_resume(out, command):
    run = open_run(out, "cpu")
    record = run.record
    if record.resume_advice is not None:
        raise RunDirError(record.resume_advice.format(run=out))
    if command is not None and record.command != command:
        raise RunDirError(
            f"--out {out!r} holds a {run.kind} run, not a {command} run; resume it "
            f"with 'pyrogen train {record.command} --out {out} --resume'"
        )
    missing = lacking_sections(run.config)
    if missing:
        raise RunDirError(
            f"{run.dir.file('config.json')!r} lacks {', '.join(map(repr, missing))}; expected "
            "the configuration that 'pyrogen train' wrote"
        )
    if not os.access(run.path, os.W_OK):
        raise RunDirError(f"--out {out!r} is not writable; a resumed run writes its checkpoints there")
    for name in (METRICS_FILE, "evaluations"):  # checked before an epoch is trained
        _check_run_folder(run, name, "trained")
    return run


def _check_run_folder(run, name, done):
    """Refuse, before any work, a run whose ``evaluations`` folder or ``metrics.csv`` (``name``), which the
    command adds to, is of the other type or a link out of the run; ``done`` says what was not done."""
    path = run.dir.file(name)
    if os.path.lexists(path):
        run.dir.resolve(name, "write")
        folder = name == "evaluations"
        if os.path.isdir(path) != folder:
            raise RunFileError(
                f"{path!r} is not a {'directory' if folder else 'regular file'}; expected the "
                f"run's own, which the command adds to (nothing was {done})"
            )


def resume(out, epochs=None, command=None, device="auto", progress=True, echo=print, logger="none", data=None):
    """Continue the run in ``out`` from its last checkpoint, exactly: the resume policy.

    The run trains to its own total of epochs (``config.json``'s ``train.epochs``), or to
    ``epochs`` where given, which must exceed the epochs done and is then recorded in
    ``config.json``; says "resumed at epoch k of N". A run stopped in its first epoch
    (``config.json`` alone) starts again as it was made. ``command`` (``pyrogen train
    COMMAND``) must be the run's own. After training, the kind's steps (:func:`finish`).
    ``logger``: ``"tensorboard"`` also writes each epoch to ``RUN_DIR/tensorboard`` (:func:`track`).

    ``data`` is where the run's recorded data are now, when they moved (``--data NEW_PATH``).

    :returns: the trainer.
    """
    distributed.init_from_env(device)
    run = _open_for_resume(out, command)
    run.require_source()
    with relocated(run.source, data):
        return _resume(run, out, epochs, device, progress, echo, logger)


def _resume(run, out, epochs, device, progress, echo, logger):
    remove_stale_temporaries(run.path)  # left by a process killed while it wrote
    own = run.settings.train.epochs
    if run.dir.never_finished_an_epoch():  # stopped in its first epoch: start it again as it was made
        total = own if epochs is None else epochs
        config = run.config
        config["train"]["epochs"] = total
        trainer = run.record.build(config, device=device, progress=progress)
        if distributed.is_main_process():
            _record_epochs(run, total)
        trainer.run = RunDir(run.path) if distributed.is_main_process() else None
    else:
        # runs resumed before config.json recorded the new total carry it in their checkpoint's configuration
        own = max(own, _checkpoint_epochs(run))
        trainer = load_trainer(out, device=device, progress=progress, epochs=own)
        done = trainer.epoch
        total = own if epochs is None else epochs
        if epochs is not None and epochs <= done:
            raise PyrogenError(
                f"argument --epochs: expected more than the {done} epochs the run in "
                f"{out!r} has done (--epochs is the new total), got {epochs}"
            )
        if total <= done:
            raise PyrogenError(
                f"the run in {out!r} has done all its {own} epochs; give --epochs N with N > {done} to train it further"
            )
        if total != own and run.record.note_on_extending is not None:
            note = run.record.note_on_extending(run.settings, own)
            if note:
                print(f"pyrogen: note: {note}", file=sys.stderr)
        if distributed.is_main_process():
            _record_epochs(run, total)
        echo(f"resumed at epoch {done} of {total}")
    _fit_and_finish(trainer, total, echo, logger)
    return trainer


def train(config, out, device="auto", progress=True, echo=print, logger="none"):
    """Train a new run of ``config`` in directory ``out`` (which must not hold a run), then the kind's
    steps after training (:func:`finish`: pictures, the end-of-training evaluation, ...).

    Under ``torchrun`` every process joins the group and trains its share; rank 0
    alone creates and writes the run directory. ``logger``: ``"tensorboard"`` also writes
    each epoch to ``RUN_DIR/tensorboard`` (:func:`track`).

    :returns: the trainer.
    """
    distributed.init_from_env(device)
    if os.path.isdir(out) and not RunDir(out).holds_run():
        remove_stale_temporaries(out)
    config = with_source(config)
    trainer = start_run(out, config, lambda: build_trainer(config, device=device, progress=progress))
    _fit_and_finish(trainer, None, echo, logger)
    return trainer


def track(trainer, logger):
    """Give ``trainer`` the experiment tracker ``logger`` names (rank 0, with a run directory); returns it
    (None for ``"none"``). ``"tensorboard"``: :class:`~pyrogen.tracking.TensorBoardTracker` in
    ``RUN_DIR/tensorboard``; a missing tensorboard package is one line saying how to install it."""
    if logger not in ("none", "tensorboard"):
        raise PyrogenError(f"logger must be 'none' or 'tensorboard', got {logger!r}")
    if logger == "none" or trainer.run is None:
        return None
    from pyrogen.tracking import TensorBoardTracker

    tracker = TensorBoardTracker(trainer.run.file("tensorboard"))
    trainer.trackers.append(tracker)
    return tracker


def _fit_and_finish(trainer, epochs, echo, logger="none"):
    tracker = track(trainer, logger)
    try:
        trainer.fit(epochs)
    finally:
        if tracker is not None:
            tracker.close()
    if distributed.is_main_process():
        finish(trainer, echo)


def finish(trainer, echo=print):
    """The steps of the trainer's kind after training. An interrupt during them is marked
    (``after_training``, the run's path), so the command line advises what completes them."""
    record = get_kind(migrate(trainer.config).kind)
    try:
        record.finish(trainer, echo)
    except KeyboardInterrupt as e:
        e.after_training = trainer.run.path if trainer.run is not None else None
        raise


# ------------------------------------------------------------------------------------------ evaluation


def evaluate_trainer(trainer, num_samples, seed=0, command="pyrogen train"):
    """Evaluate ``trainer``'s model on its test data, seeded: the test ELBO (an autoencoder's objective),
    and with ``num_samples`` K >= the PSIS minimum the importance-sampled log p(x) with the Pareto k-hat
    of its weights (Vehtari et al. 2015), all from the same draws; nats per example."""
    import pyro

    from pyrogen.evaluation.psis import MIN_SAMPLES, khat_summary, log_likelihood_with_khat

    if num_samples and get_kind(migrate(trainer.config).kind).evaluate == "objective":
        trainer.evaluate(num_samples)  # raises: a point-mass guide has no importance weights
    pyro.set_rng_seed(seed)
    if num_samples < MIN_SAMPLES:
        result = trainer.evaluate(num_samples)
    else:  # log p(x) and the Pareto k-hat of its importance weights, from the same draws
        result = trainer.evaluate(0)
        vae = trainer.vae.eval()
        with pyro.validation_enabled(False):
            ll = log_likelihood_with_khat(
                vae.model,
                vae.guide,
                trainer.test_data,
                num_samples,
                batch_size=migrate(trainer.config).eval.batch_size,
                progress=trainer.progress,
            )
        vae.train()
        result.update(log_px=ll["log_px"], psis=khat_summary(ll["khat"]))
    num_examples = trainer.test_data.shape[0]
    result.update(
        num_samples=num_samples,
        seed=seed,
        epoch=trainer.epoch,
        num_examples=num_examples,
        written_by=command,
        written_at=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    return result


def print_evaluation(result, echo=print):
    """The evaluation's lines: test ELBO and log p(x) in nats, then the PSIS diagnostic."""
    if "objective" in result:  # an autoencoder: no ELBO
        echo(f"test objective log p(x|z) + log p(z) at the code: {result['objective']:.2f} nats")
        return
    line = f"test ELBO {result['elbo']:.2f} nats"
    if "log_px" in result:
        line += f", log p(x) {result['log_px']:.2f} nats (K = {result['num_samples']})"
    echo(line)
    if "psis" in result:
        from pyrogen.evaluation.psis import format_khat_summary

        echo(format_khat_summary(result["psis"]))


def write_evaluation(trainer, result):
    """Write the evaluation into the run after it was printed, so a failed write loses nothing: its file
    is named by its settings (K, seed, epoch, test images), so no evaluation replaces another."""
    from pyrogen.files import log_px_evaluation_name

    if trainer.run is None:
        return
    name = log_px_evaluation_name(result["num_samples"], result["seed"], result["epoch"], result["num_examples"])
    try:
        trainer.run.write_json(name, result)
    except OSError as e:
        raise PyrogenError(
            f"cannot write {trainer.run.file(name)!r}: {e.strerror or e}; the evaluation above was not saved"
        ) from None


def binarized_note(config):
    """The line under a reconstruction grid that says how its inputs were binarized, or None."""
    if migrate(config).data.binarize in (None, "none"):
        return None
    return "inputs binarized: each pixel drawn once from Bernoulli(grey level)"


def write_training_pictures(trainer):
    """``samples.png`` and ``reconstructions.png`` of the trained model, titled and labelled; for examples
    that are not images (a table, counts) ``latent_codes.png`` and ``feature_reconstruction.png`` of the
    test data instead (:mod:`pyrogen.plotting_tables`)."""
    from pyrogen.plotting import plot_image_grid, plot_reconstruction_pairs
    from pyrogen.plotting_tables import is_image_shape, plot_table_pictures

    if trainer.run is None:
        return []
    if not is_image_shape(getattr(trainer.vae, "image_shape", (1, 1, 1))):
        vae = trainer.vae.eval()
        try:
            return plot_table_pictures(vae, trainer.test_data, trainer.run.file, getattr(trainer, "test_labels", None))
        finally:
            vae.train()
    vae = trainer.vae.eval()
    with torch.no_grad():
        samples = vae.sample(64)
        x = trainer.test_data[:32]
        recon = vae.reconstruct(x)
    vae.train()
    return [
        plot_image_grid(
            samples,
            trainer.run.file("samples.png"),
            f"Mean images of 64 draws z ~ p(z), end of training (epoch {trainer.epoch})",
        ),
        plot_reconstruction_pairs(
            x, recon, trainer.run.file("reconstructions.png"), note=binarized_note(trainer.config)
        ),
    ]


def final_evaluation(trainer, echo=print):
    """A VAE-family run's steps after training: the best-validation weights where the learning rate
    decayed (He et al. evaluate those), the pictures, and the evaluation of ``eval.num_samples``
    importance samples, printed and then written into the run."""
    if trainer.decay is not None:
        trainer.decay.restore_best()
        echo(f"evaluating the best validation epoch's weights (epoch {trainer.decay.best_epoch + 1})")
    for path in write_training_pictures(trainer):
        echo(f"wrote {path}")
    result = evaluate_trainer(trainer, migrate(trainer.config).eval.num_samples)
    print_evaluation(result, echo)
    write_evaluation(trainer, result)


def evaluate(
    run_dir,
    eval_samples=None,
    test_size=None,
    seed=0,
    device="auto",
    progress=True,
    echo=print,
    command="pyrogen evaluate",
    data=None,
):
    """``pyrogen evaluate``: the run's test ELBO and log p(x) of ``eval_samples`` importance samples
    (default 1000; an autoencoder's test objective), printed and written into the run.

    ``data``: where the run's recorded data are now, when they moved (``--data NEW_PATH``).

    :returns: the result dict (also in ``RUN_DIR/evaluations/``).
    """
    run = open_run(run_dir, "cpu")
    record = run.record
    if record.evaluate is None:
        raise RunDirError(record.evaluate_refusal.format(run=run_dir))
    run.require_source()
    with relocated(run.source, data):
        return _evaluate(run, run_dir, eval_samples, test_size, seed, device, progress, echo, command)


def _evaluate(run, run_dir, eval_samples, test_size, seed, device, progress, echo, command):
    record = run.record
    if record.evaluate == "objective" and eval_samples is not None:  # no importance weights, no log p(x)
        raise PyrogenError(
            "argument --eval-samples: an autoencoder run has no log p(x) to estimate (its guide "
            "is a point mass); omit --eval-samples to evaluate its test objective"
        )
    _check_run_folder(run, "evaluations", "evaluated")
    trainer = load_trainer(run_dir, device=device, progress=progress)
    if test_size:
        trainer.test_data = trainer.test_data[:test_size]
    num_samples = 0 if record.evaluate == "objective" else 1000 if eval_samples is None else eval_samples
    result = evaluate_trainer(trainer, num_samples, seed=seed, command=command)
    print_evaluation(result, echo)
    write_evaluation(trainer, result)
    return result


# ----------------------------------------------------------------------------- samples, plots, report


def _conditional_samples(model, num_samples, label, run_dir):
    """``(images, nrow)``: of class ``label``, or one grid row per class, for a class-conditional
    model; plain draws otherwise."""
    num_classes = getattr(model, "num_classes", None)
    if num_classes is None:
        if label is not None:
            raise PyrogenError(f"--label needs a class-conditional run, and {run_dir!r} is not one")
        return model.sample(num_samples), 8
    if label is not None:
        if not 0 <= label < num_classes:
            raise PyrogenError(f"--label {label} is outside the run's classes 0 .. {num_classes - 1}")
        return model.sample(num_samples, y=label), 8
    per_class = max(1, num_samples // num_classes)
    device = next(model.buffers()).device
    labels = torch.arange(num_classes, device=device).repeat_interleave(per_class)
    return model.sample(labels.shape[0], y=labels), per_class


def sample(run_dir, num_samples=64, out=None, sampler="prior", seed=0, label=None, device="auto", echo=print):
    """``pyrogen sample``: a PNG grid of the mean images of ``num_samples`` draws, z from the prior or
    from a ``gmm:K`` mixture fitted to the training codes (Ghosh et al. 2020); returns its path.

    Without ``out`` the file is named by its settings in the run and never replaces an earlier one."""
    import pyro

    from pyrogen.files import check_not_run_file, unused_path
    from pyrogen.plotting import plot_image_grid

    if out is not None:
        check_not_run_file(out)
    run = open_run(run_dir, device=device)
    run.require("can_sample", "pyrogen sample")
    stem, nrow = "samples", 8
    if sampler == "prior":
        vae = run.model()
        pyro.set_rng_seed(seed)
        images, nrow = _conditional_samples(vae, num_samples, label, run_dir)
        what = "draws z ~ p(z)"
        if getattr(vae, "num_classes", None) is not None:
            stem += "-by-class" if label is None else f"-label{label}"
            what += ", one row per class" if label is None else f" of class {label}"
    else:
        from pyrogen.evaluation.gmm_sampler import fit_run_gmm

        components = int(sampler.split(":")[1])
        gmm = fit_run_gmm(run, n_components=components, seed=seed)
        pyro.set_rng_seed(seed)
        images = gmm.sample_images(num_samples)
        stem, what = f"samples-gmm{components}", f"draws z from a {components}-component mixture fitted to the codes"
    if out:  # the user's own file, written as it always was
        out = os.path.abspath(out)
        path = RunDir(os.path.dirname(out)).save_image(os.path.basename(out), images, nrow=nrow)
    else:  # named by its settings, and never over an earlier picture
        epoch = run.checkpoint["epoch"]
        path = plot_image_grid(
            images,
            unused_path(run.dir.file(f"{stem}-epoch{epoch}-n{num_samples}-seed{seed}.png")),
            f"Mean images of {images.shape[0]} {what}, seed {seed}, checkpoint of epoch {epoch}",
            ncol=nrow,
        )
    echo(f"wrote {path}")
    return path


def sample_quality(run_dir, num_samples=10000, seed=0, device="auto", echo=print, data=None):
    """``pyrogen sample-quality``: Fréchet distance, precision and recall of the run's samples in the
    feature network's features, printed and written into the run; returns the result."""
    from pyrogen.evaluation.sample_quality import evaluate_run
    from pyrogen.files import sample_quality_name

    opened = open_run(run_dir, device="cpu")
    opened.require("can_sample", "pyrogen sample-quality")
    with relocated(opened.source, data):
        opened.check_source()
        r = evaluate_run(run_dir, num_samples=num_samples, seed=seed, device=device)
    echo(
        f"Fréchet distance {r['frechet_distance']:.3f}, precision {r['precision']:.3f}, recall {r['recall']:.3f} "
        f"({r['num_fake']} samples vs {r['num_real']} test images, k = {r['k']}, "
        f"feature network {r['feature_net']})"
    )
    run = open_run(run_dir, device="cpu")
    epoch = run.checkpoint["epoch"]
    saved = dict(
        r,
        num_samples=num_samples,
        seed=seed,
        epoch=epoch,
        written_by="pyrogen sample-quality",
        written_at=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    name = sample_quality_name(num_samples, seed, epoch)
    run.dir.write_json(name, saved)
    echo(f"wrote {run.dir.file(name)}")
    return saved


def plot(run_dir, out=None, device="auto", seed=0, num_points=5000, echo=print, data=None):
    """``pyrogen plot``: the run's pictures (:func:`pyrogen.plotting.plot_run`); returns their paths.
    ``data``: where the run's recorded data are now, when they moved (``--data NEW_PATH``)."""
    from pyrogen.files import EVALUATIONS_DIR, RUN_FILES, _enclosing_run
    from pyrogen.plotting import plot_run

    if out is not None:  # a folder of pictures, never a run's own file or its evaluations/ folder
        for folder in dict.fromkeys((os.path.abspath(out), os.path.realpath(out))):
            found = _enclosing_run(os.path.join(folder, "picture.png"))
            rel = os.path.dirname(found[1]) if found else ""
            if rel in RUN_FILES or rel.split(os.sep)[0] == EVALUATIONS_DIR:
                raise RunDirError(
                    f"--out {os.path.abspath(out)!r} is in its run's own files ({rel!r}); expected "
                    "another folder for the pictures (nothing was written)"
                )
    run = open_run(run_dir, device="cpu")
    run.require_source()
    with relocated(run.source, data):
        paths = plot_run(run_dir, out_dir=out, device=device, seed=seed, num_points=num_points)
    for path in paths:
        echo(f"wrote {path}")
    return paths


def report(run_dir, out=None, echo=print, data=None):
    """``pyrogen report``: the run's HTML report (:func:`pyrogen.report.write_report`); returns its path.

    The report is about the run's data, so they must still be what the run recorded (re-opened first;
    ``data``: where they are now, when they moved, ``--data NEW_PATH``)."""
    from pyrogen.files import check_not_run_file
    from pyrogen.report import write_report

    if out is not None:
        check_not_run_file(out)
    run = open_run(run_dir, device="cpu")
    with relocated(run.source, data):
        run.check_source()
    path = write_report(run_dir, out)
    echo(f"wrote {path}")
    return path


def train_features(cache_dir=None, force=False, progress=True, echo=print):
    """``pyrogen train features``: keep a valid cached network (unless ``force``), else train and cache one;
    say its test accuracy.

    :returns: the manifest (recipe, test accuracy, SHA-256 of the weights).
    """
    from pyrogen.evaluation import features as F

    path, _ = F.default_paths(cache_dir)
    if not force:
        try:
            _, manifest = F.load_classifier(cache_dir)
            echo(
                f"valid cached feature network at {path}: test accuracy {manifest['test_accuracy']:.4f}, "
                f"sha256 {manifest['sha256']}"
            )
            return manifest
        except F.FeatureNetworkError:
            pass
    _, manifest = F.train_feature_network(cache_dir, progress=progress)
    echo(
        f"wrote {path}: test accuracy {manifest['test_accuracy']:.4f}, sha256 {manifest['sha256']}, "
        f"trained in {manifest['train_seconds']} s"
    )
    return manifest
