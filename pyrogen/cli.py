"""The ``pyrogen`` command line: train, evaluate and sample.

::

    pyrogen train vae --out runs/vae --epochs 10
    pyrogen train vae --out runs/vae --epochs 20 --resume
    pyrogen evaluate runs/vae --eval-samples 1000
    pyrogen sample runs/vae -n 64
    pyrogen plot runs/vae
    pyrogen report runs/vae

Errors caused by input (a missing data set, an occupied output directory, a
corrupt checkpoint, ...) print one line, ``pyrogen: error: ...``, and exit
with status 2.
"""

import argparse
import sys
import warnings

from pyrogen import distributed
from pyrogen.data import BINARIZATIONS, DATASETS
from pyrogen.errors import PyrogenError


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_threads(p):
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads of torch (torch.set_num_threads); torch's default, one per core, "
                        "stalls when anything else runs on the machine, so give fewer on a shared one "
                        "(default: torch's)")


def _add_device(p):
    p.add_argument("--device", default="auto",
                   help="'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N' (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_threads(p)


def _add_vae_options(p):
    from pyrogen.config import AUTO_COMPILE_MIN_STEPS
    from pyrogen.distributions import FAMILIES, LIKELIHOODS
    from pyrogen.networks import ARCHITECTURES

    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run directory for config.json, metrics.csv, checkpoint.pt and pictures; "
                        "must not already hold a run unless --resume is given")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR from its last checkpoint, exactly; model, data "
                        "and optimizer options are then read from the run, and --epochs is the new total")
    g = p.add_argument_group("model")
    g.add_argument("--latent-dim", type=_positive_int, default=50, help="dimension of z (default: 50)")
    g.add_argument("--architecture", choices=ARCHITECTURES, default="mlp",
                   help="encoder/decoder networks (default: mlp)")
    g.add_argument("--hidden", type=_positive_int, nargs="+", default=[400], metavar="WIDTH",
                   help="hidden widths of the encoder, mirrored by the decoder; for conv, the last "
                        "is the width of the dense layer (default: 400)")
    g.add_argument("--likelihood", choices=sorted(LIKELIHOODS), default="bernoulli",
                   help="observation likelihood p(x|z) (default: bernoulli)")
    g.add_argument("--prior", choices=sorted(FAMILIES), default="normal", help="latent family of p(z)")
    g.add_argument("--posterior", choices=sorted(FAMILIES), default="normal",
                   help="latent family of q(z|x)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="fashion-mnist",
                   help="data set (default: fashion-mnist, read from /usr/share/datasets/fashion-mnist)")
    g.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    g.add_argument("--binarize", choices=BINARIZATIONS, default=None,
                   help="binarization of the grey levels: resampled every epoch (dynamic), drawn "
                        "once (static), or none (default: dynamic for the bernoulli likelihood, "
                        "none for likelihoods of grey levels)")
    g.add_argument("--train-size", type=_positive_int, default=None,
                   help="use only the first N training images")
    g.add_argument("--test-size", type=_positive_int, default=None, help="use only the first N test images")
    g = p.add_argument_group("training (AEVB: minibatch M, L particles, Adam)")
    g.add_argument("--epochs", type=_positive_int, default=10, help="epochs in total (default: 10)")
    g.add_argument("--batch-size", type=_positive_int, default=100, help="minibatch size M (default: 100)")
    g.add_argument("--num-particles", type=_positive_int, default=1,
                   help="Monte Carlo draws L per example and step (default: 1)")
    g.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    g.add_argument("--elbo", choices=["trace", "meanfield"], default="trace",
                   help="trace: Monte Carlo KL (Trace_ELBO); meanfield: analytic KL (TraceMeanField_ELBO)")
    g.add_argument("--seed", type=int, default=0, help="random seed; seeded runs are reproducible")
    g.add_argument("--compile", choices=["auto", "on", "off"], nargs="?", const="on", default="auto",
                   help="record the ELBO as one graph per batch shape and compile it with torch.compile: "
                        "steps about 20%% faster after a compilation of about 4 s on a 2-core CPU. auto: on "
                        f"when a C++ compiler works and the run has at least {AUTO_COMPILE_MIN_STEPS} steps (a failed compilation "
                        "falls back to the eager step with one line), off for --aggressive and under torchrun; "
                        "a bare --compile is on (default: auto; see docs/performance)")
    g.add_argument("--eval-samples", type=_non_negative_int, default=1000,
                   help="importance samples K for the final log p(x) on the test set; 0 skips it "
                        "(default: 1000)")
    _add_device(p)


def _add_collapse_options(p):
    from pyrogen.infer.kl_schedule import KL_SCHEDULES

    g = p.add_argument_group("posterior collapse (KL weight λ, free bits, aggressive training)")
    g.add_argument("--kl-schedule", choices=KL_SCHEDULES, default="constant",
                   help="KL weight λ over training: constant (--kl-weight), linear warm-up from 0.1 to 1 "
                        "over --kl-warmup-epochs, or cyclical (Fu et al. 2019, --kl-cycles cycles over "
                        "--epochs); evaluation always uses λ = 1 (default: constant)")
    g.add_argument("--kl-weight", type=float, default=1.0, help="λ of the constant schedule (default: 1)")
    g.add_argument("--kl-warmup-epochs", type=_positive_float, default=10.0,
                   help="epochs of the linear warm-up (default: 10)")
    g.add_argument("--kl-cycles", type=_positive_int, default=4, help="cycles of the cyclical schedule (default: 4)")
    g.add_argument("--free-bits", type=float, default=0.0, metavar="NATS",
                   help="free bits: KL per latent dimension, averaged over the minibatch, floored at NATS "
                        "(Kingma et al. 2016; analytic KL); 0 is off (default: 0)")
    g.add_argument("--aggressive", action="store_true",
                   help="aggressive inference-network training (He et al. 2019) until the held-out mutual "
                        "information stops improving")
    g.add_argument("--aggressive-patience", type=_positive_int, default=5,
                   help="epochs in which MI fails to beat its best before aggressive mode ends (default: 5)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="pyrogen", description="Deep generative models as Pyro model/guide pairs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model", description="Train a model.")
    kinds = train.add_subparsers(dest="kind", required=True, metavar="MODEL")
    _add_vae_options(kinds.add_parser(
        "vae", help="variational autoencoder trained by SVI",
        description="Train a VAE by SVI (AEVB), print test ELBO and importance-sampled log p(x), "
                    "and write metrics, a checkpoint and PNG grids of samples and reconstructions."))
    _add_collapse_options(kinds.choices["vae"])
    ae = kinds.add_parser(
        "ae", help="deterministic autoencoder: the VAE's networks with a point-mass guide",
        description="Train the autoencoder baseline (the VAE's networks, q(z|x) a point mass at the "
                    "encoder's output) by the same loop; its objective is log p(x|z) + log p(z) at "
                    "z = encoder(x), and it has no ELBO or importance-sampled log p(x).")
    _add_vae_options(ae)
    ae.set_defaults(eval_samples=0)
    _add_gan_options(kinds.add_parser(
        "gan", help="generative adversarial network: a Pyro generator trained by pyrogen.infer.Adversarial",
        description="Train a GAN (generator x = G(z) against a discriminator) and write metrics with "
                    "training-health flags, a checkpoint and a PNG grid of samples from fixed noise per epoch."))

    _add_feature_options(kinds.add_parser(
        "features", help="the Fashion-MNIST feature network of the sample-quality measures",
        description="Train pyrogen's Fashion-MNIST classifier by its fixed recipe (a few minutes on a CPU) "
                    "and cache it, SHA-256 checked, for the Fréchet distance and precision/recall of samples; "
                    "keeps a valid cached one unless --force."))

    ev = commands.add_parser(
        "evaluate", help="test ELBO and importance-sampled log p(x) of a run",
        description="Evaluate a run's checkpoint on its test data: ELBO and log p(x), nats per example.")
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--eval-samples", type=_positive_int, default=1000,
                    help="importance samples K per example (default: 1000)")
    ev.add_argument("--num-samples", type=_positive_int, default=None, dest="deprecated_num_samples",
                    help=argparse.SUPPRESS)  # the old name of --eval-samples, kept working
    ev.add_argument("--test-size", type=_positive_int, default=None, help="evaluate the first N test images")
    ev.add_argument("--seed", type=int, default=0,
                    help="random seed of the importance samples; results go to "
                         "RUN_DIR/evaluations/log-px-K<K>-seed<SEED>-epoch<E>-test<N>.json (default: 0)")
    _add_device(ev)

    sm = commands.add_parser("sample", help="draw samples from a run's model as a PNG grid",
                             description="Decode draws z ~ p(z) and save the mean images as a PNG grid.")
    sm.add_argument("run_dir", metavar="RUN_DIR")
    sm.add_argument("-n", "--num-samples", type=_positive_int, default=64, help="images (default: 64)")
    sm.add_argument("--out", default=None,
                    help="PNG path (default: RUN_DIR/samples-epoch<E>-n<N>-seed<SEED>.png, titled; a number "
                         "is appended rather than overwrite an earlier picture)")
    sm.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_device(sm)

    sq = commands.add_parser(
        "sample-quality", help="Fréchet distance, precision and recall of a run's samples",
        description="Score samples of a run's model (VAE, autoencoder or GAN) against the test images in the "
                    "features of pyrogen's Fashion-MNIST classifier (train it once with 'pyrogen train features').")
    sq.add_argument("run_dir", metavar="RUN_DIR")
    sq.add_argument("-n", "--num-samples", type=_positive_int, default=10000,
                    help="samples, scored against as many test images (default: 10000)")
    sq.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_device(sq)

    pl = commands.add_parser(
        "plot", help="write a run's pictures as PNG",
        description="Reconstructions, prior samples, latent traversals, interpolations, the 2-D "
                    "manifold (latent dimension 2 only), latent codes by class and training curves.")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, metavar="DIR", help="folder for the PNGs (default: RUN_DIR/plots)")
    pl.add_argument("--num-points", type=_positive_int, default=5000,
                    help="test images in the latent-code scatter plot (default: 5000)")
    pl.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    _add_device(pl)

    rp = commands.add_parser(
        "report", help="write a run's HTML report",
        description="One self-contained HTML page (readable offline): settings, evaluation with the "
                    "Pareto k-hat diagnostic, metrics, training curves and the run's pictures.")
    rp.add_argument("run_dir", metavar="RUN_DIR")
    rp.add_argument("--out", default=None, help="HTML path (default: RUN_DIR/report.html)")
    _add_threads(rp)
    return parser


def _report(result):
    if "objective" in result:  # an autoencoder: no ELBO
        print(f"test objective log p(x|z) + log p(z) at the code: {result['objective']:.2f} nats")
        return
    line = f"test ELBO {result['elbo']:.2f} nats"
    if "log_px" in result:
        line += f", log p(x) {result['log_px']:.2f} nats (K = {result['num_samples']})"
    print(line)
    if "psis" in result:
        from pyrogen.evaluation.psis import format_khat_summary

        print(format_khat_summary(result["psis"]))


def _evaluate(trainer, num_samples, seed=0, command="pyrogen train"):
    """Evaluate ``trainer``'s model on its test data, seeded; the result goes to a file of the run named
    by its settings (K, seed, epoch, test images), so no evaluation replaces another."""
    import datetime

    import pyro

    from pyrogen.evaluation.psis import MIN_SAMPLES, khat_summary, log_likelihood_with_khat
    from pyrogen.files import log_px_evaluation_name

    if num_samples and trainer.config.get("kind") == "ae":
        trainer.evaluate(num_samples)  # raises: a point-mass guide has no importance weights
    pyro.set_rng_seed(seed)
    if num_samples < MIN_SAMPLES:
        result = trainer.evaluate(num_samples)
    else:  # log p(x) and the Pareto k-hat of its importance weights, from the same draws
        result = trainer.evaluate(0)
        vae = trainer.vae.eval()
        with pyro.validation_enabled(False):
            ll = log_likelihood_with_khat(vae.model, vae.guide, trainer.test_data, num_samples,
                                          batch_size=trainer.config["eval"]["batch_size"],
                                          progress=trainer.progress)
        vae.train()
        result.update(log_px=ll["log_px"], psis=khat_summary(ll["khat"]))
    num_examples = trainer.test_data.shape[0]
    result.update(num_samples=num_samples, seed=seed, epoch=trainer.epoch, num_examples=num_examples,
                  written_by=command, written_at=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    if trainer.run is not None:
        trainer.run.write_json(log_px_evaluation_name(num_samples, seed, trainer.epoch, num_examples), result)
    return result


def _binarized_note(config):
    """The line under a reconstruction grid that says how its inputs were binarized, or None."""
    binarize = config.get("data", {}).get("binarize", "none")
    if binarize in (None, "none"):
        return None
    return "inputs binarized: each pixel drawn once from Bernoulli(grey level)"


def _write_training_pictures(trainer):
    """``samples.png`` and ``reconstructions.png`` of the trained model, titled and labelled."""
    import torch

    from pyrogen.plotting import plot_image_grid, plot_reconstruction_pairs

    if trainer.run is None:
        return []
    vae = trainer.vae.eval()
    with torch.no_grad():
        samples = vae.sample(64)
        x = trainer.test_data[:32]
        recon = vae.reconstruct(x)
    vae.train()
    return [plot_image_grid(samples, trainer.run.file("samples.png"),
                            f"Mean images of 64 draws z ~ p(z), end of training (epoch {trainer.epoch})"),
            plot_reconstruction_pairs(x, recon, trainer.run.file("reconstructions.png"),
                                      note=_binarized_note(trainer.config))]


def _train(args):
    if args.kind == "gan":
        return _train_gan(args)
    if args.kind == "features":
        return _train_features(args)
    return _train_vae(args)


def _add_gan_options(p):
    """Options of ``pyrogen train gan``."""
    from pyrogen.infer.gan_losses import GAN_LOSSES
    from pyrogen.models.gan import ARCHITECTURES, NORMS

    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run directory for config.json, metrics.csv, checkpoint.pt and sample grids; "
                        "must not already hold a run unless --resume is given")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUN_DIR from its last checkpoint, exactly; --epochs is the new total")
    g = p.add_argument_group("networks")
    g.add_argument("--architecture", choices=ARCHITECTURES, default="dcgan",
                   help="generator and discriminator (default: dcgan)")
    g.add_argument("--latent-dim", type=_positive_int, default=100, help="dimension of z (default: 100)")
    g.add_argument("--hidden", type=_positive_int, nargs="+", default=[256, 256], metavar="WIDTH",
                   help="hidden widths of the MLP players (default: 256 256)")
    g.add_argument("--channels", type=_positive_int, default=64,
                   help="feature maps of the DCGAN players (default: 64)")
    g.add_argument("--norm", choices=NORMS, default=None,
                   help="discriminator normalisation: batch, spectral or none (default: none for wgan-gp and "
                        "the MLP, batch for DCGAN)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="data set (default: fashion-mnist)")
    g.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    g.add_argument("--train-size", type=_positive_int, default=None, help="use only the first N training images")
    g.add_argument("--test-size", type=_positive_int, default=None, help="use only the first N test images")
    g = p.add_argument_group("training (the adversarial game)")
    g.add_argument("--loss", choices=sorted(GAN_LOSSES), default="nonsaturating",
                   help="the game (default: nonsaturating)")
    g.add_argument("--gp-weight", type=float, default=10.0, help="λ of WGAN-GP's gradient penalty (default: 10)")
    g.add_argument("--d-steps", type=_positive_int, default=1,
                   help="discriminator updates per generator update, each on a fresh batch (default: 1)")
    g.add_argument("--epochs", type=_positive_int, default=10, help="epochs in total (default: 10)")
    g.add_argument("--batch-size", type=_positive_int, default=64, help="minibatch size (default: 64)")
    g.add_argument("--lr-g", type=_positive_float, default=2e-4, help="generator's Adam learning rate (default: 2e-4)")
    g.add_argument("--lr-d", type=_positive_float, default=2e-4,
                   help="discriminator's Adam learning rate (default: 2e-4)")
    g.add_argument("--beta1", type=float, default=0.5, help="Adam's beta1 for both players (default: 0.5)")
    g.add_argument("--beta2", type=float, default=0.999, help="Adam's beta2 for both players (default: 0.999)")
    g.add_argument("--ema-decay", type=float, default=0.0,
                   help="moving average of the generator's weights for samples (e.g. 0.999); 0 is off (default: 0)")
    g.add_argument("--seed", type=int, default=0, help="random seed; seeded runs are reproducible")
    _add_device(p)


def _train_gan(args):
    """``pyrogen train gan``: build or resume the run, train it, print where its samples are.

    Under ``torchrun`` every process joins the group and trains its share; rank 0
    alone creates and writes the run directory.
    """
    from pyrogen.config import default_gan_config
    from pyrogen.errors import DataError
    from pyrogen.training.gan import build_gan_trainer, resume_gan_trainer

    def make_config():
        config = default_gan_config(args.architecture, args.latent_dim, tuple(args.hidden), args.channels,
                                    args.norm, args.loss)
        config["data"].update(dataset=args.dataset, root=args.data_dir, train_size=args.train_size,
                              test_size=args.test_size)
        if not 0 <= args.ema_decay < 1:
            raise DataError(f"--ema-decay must lie in [0, 1), got {args.ema_decay}")
        config["train"].update(epochs=args.epochs, batch_size=args.batch_size, loss=args.loss,
                               gp_weight=args.gp_weight, d_steps=args.d_steps, lr_g=args.lr_g, lr_d=args.lr_d,
                               betas=[args.beta1, args.beta2], ema_decay=args.ema_decay, seed=args.seed)
        return config

    trainer = _resume_or_start(args, resume_gan_trainer, build_gan_trainer, make_config)
    trainer.fit()
    if distributed.is_main_process():
        print(f"wrote {trainer.run.file('samples.png')}")
    return 0


def _add_feature_options(p):
    """Options of ``pyrogen train features``."""
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="default: $PYROGEN_CACHE, else $XDG_CACHE_HOME/pyrogen, else ~/.cache/pyrogen")
    p.add_argument("--force", action="store_true", help="retrain even if a valid cached network exists")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_threads(p)


def _train_features(args):
    """``pyrogen train features``: keep a valid cached network, else train and cache one; print its accuracy."""
    from pyrogen.evaluation.features import FeatureNetworkError, default_paths, load_classifier, train_feature_network

    path, _ = default_paths(args.cache_dir)
    if not args.force:
        try:
            _, manifest = load_classifier(args.cache_dir)
            print(f"valid cached feature network at {path}: test accuracy {manifest['test_accuracy']:.4f}, "
                  f"sha256 {manifest['sha256']}")
            return 0
        except FeatureNetworkError:
            pass
    _, manifest = train_feature_network(args.cache_dir, progress=not args.no_progress)
    print(f"wrote {path}: test accuracy {manifest['test_accuracy']:.4f}, sha256 {manifest['sha256']}, "
          f"trained in {manifest['train_seconds']} s")
    return 0


def _resume_or_start(args, resume, build, make_config):
    """The trainer of ``pyrogen train KIND``: the run in ``--out`` resumed (``--epochs`` the new
    total), or a new run of the configuration ``make_config()`` returns."""
    from pyrogen.runs import start_run

    progress = not args.no_progress
    distributed.init_from_env(args.device)
    if args.resume:
        trainer = resume(args.out, device=args.device, progress=progress)
        trainer.config["train"]["epochs"] = args.epochs
        return trainer
    config = make_config()
    return start_run(args.out, config, lambda: build(config, device=args.device, progress=progress))


def _train_vae(args):
    from pyrogen.config import default_config
    from pyrogen.training.vae import build_trainer, resume_trainer

    def make_config():
        if args.kind == "ae" and args.eval_samples:
            raise PyrogenError("--eval-samples must be 0 for an autoencoder: its guide is a point mass, "
                               "which has no importance weights, so log p(x) cannot be estimated")
        config = default_config(kind=args.kind, latent_dim=args.latent_dim, architecture=args.architecture,
                                hidden=tuple(args.hidden), likelihood=args.likelihood,
                                prior=args.prior, posterior=args.posterior)
        config["data"].update(dataset=args.dataset, root=args.data_dir,
                              binarize=args.binarize or config["data"]["binarize"],
                              train_size=args.train_size, test_size=args.test_size)
        config["train"].update(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               elbo=args.elbo, num_particles=args.num_particles, seed=args.seed,
                               compile=args.compile)
        if args.kind == "vae":
            config["train"].update(kl_schedule=args.kl_schedule, kl_weight=args.kl_weight,
                                   kl_warmup_epochs=args.kl_warmup_epochs, kl_cycles=args.kl_cycles,
                                   free_bits=args.free_bits, aggressive=args.aggressive,
                                   aggressive_patience=args.aggressive_patience)
        config["eval"]["num_samples"] = args.eval_samples
        return config

    trainer = _resume_or_start(args, resume_trainer, build_trainer, make_config)
    trainer.fit()
    if not distributed.is_main_process():
        return 0
    for path in _write_training_pictures(trainer):
        print(f"wrote {path}")
    _report(_evaluate(trainer, trainer.config["eval"]["num_samples"]))
    return 0


def _evaluate_run(args):
    from pyrogen.runs import open_run
    from pyrogen.training.vae import resume_trainer

    if open_run(args.run_dir).kind == "gan":
        raise PyrogenError("a GAN's generator is an implicit model with no density, so it has no ELBO or "
                           f"log p(x); score its samples with 'pyrogen sample-quality {args.run_dir}' "
                           "(Fréchet distance, precision and recall) instead")
    trainer = resume_trainer(args.run_dir, device=args.device, progress=not args.no_progress)
    if args.test_size:
        trainer.test_data = trainer.test_data[: args.test_size]
    num_samples = args.eval_samples
    if args.deprecated_num_samples is not None:
        print("pyrogen: warning: 'evaluate --num-samples' is deprecated; use --eval-samples, the name "
              "'train' uses for the same K", file=sys.stderr)
        num_samples = args.deprecated_num_samples
    _report(_evaluate(trainer, num_samples, seed=args.seed, command="pyrogen evaluate"))
    return 0


def _sample_quality_run(args):
    import datetime

    from pyrogen.evaluation.sample_quality import evaluate_run
    from pyrogen.files import sample_quality_name
    from pyrogen.runs import open_run

    r = evaluate_run(args.run_dir, num_samples=args.num_samples, seed=args.seed, device=args.device)
    print(f"Fréchet distance {r['frechet_distance']:.3f}, precision {r['precision']:.3f}, recall {r['recall']:.3f} "
          f"({r['num_fake']} samples vs {r['num_real']} test images, k = {r['k']}, "
          f"feature network {r['feature_net']})")
    run = open_run(args.run_dir, device="cpu")
    if run.kind != "features":
        epoch = run.checkpoint["epoch"]
        saved = dict(r, num_samples=args.num_samples, seed=args.seed, epoch=epoch, written_by="pyrogen sample-quality",
                     written_at=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
        name = sample_quality_name(args.num_samples, args.seed, epoch)
        run.dir.write_json(name, saved)
        print(f"wrote {run.dir.file(name)}")
    return 0


def _sample_run(args):
    import os

    import pyro

    from pyrogen.files import RunDir
    from pyrogen.runs import open_run

    from pyrogen.files import unused_path
    from pyrogen.plotting import plot_image_grid

    run = open_run(args.run_dir, device=args.device)
    vae = run.model()
    pyro.set_rng_seed(args.seed)
    images = vae.sample(args.num_samples)
    if args.out:  # the user's own file, written as it always was
        out = os.path.abspath(args.out)
        path = RunDir(os.path.dirname(out)).save_image(os.path.basename(out), images)
    else:  # named by its settings, and never over an earlier picture
        epoch = run.checkpoint["epoch"]
        path = plot_image_grid(
            images, unused_path(run.dir.file(f"samples-epoch{epoch}-n{args.num_samples}-seed{args.seed}.png")),
            f"Mean images of {args.num_samples} draws z ~ p(z), seed {args.seed}, checkpoint of epoch {epoch}")
    print(f"wrote {path}")
    return 0


def _plot_run(args):
    from pyrogen.plotting import plot_run

    for path in plot_run(args.run_dir, out_dir=args.out, device=args.device, seed=args.seed,
                         num_points=args.num_points):
        print(f"wrote {path}")
    return 0


def _report_run(args):
    from pyrogen.report import write_report

    print(f"wrote {write_report(args.run_dir, args.out)}")
    return 0


def main(argv=None):
    import torch

    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "evaluate": _evaluate_run, "sample": _sample_run,
                "plot": _plot_run, "report": _report_run,
                "sample-quality": _sample_quality_run}
    threads = torch.get_num_threads()
    try:
        with warnings.catch_warnings():
            # ArviZ announces its refactor in five lines at import; nothing a user of pyrogen can act on
            warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor",
                                    category=FutureWarning)
            if getattr(args, "threads", None):
                torch.set_num_threads(args.threads)
            return handlers[args.command](args)
    except PyrogenError as e:
        print(f"pyrogen: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyrogen: interrupted; the last finished epoch's checkpoint is kept", file=sys.stderr)
        return 130
    finally:
        torch.set_num_threads(threads)  # main() called from Python leaves torch as it found it
