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
import math
import os
import signal
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
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _bounded_int(limit):
    """A positive integer at most ``limit`` (beyond it the networks or images would not fit in memory)."""
    def parse(text):
        value = _positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"expected a positive integer <= {limit}, got {value}")
        return value
    return parse


def _float(text, expected, ok):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive_float(text):
    return _float(text, "a positive finite number", lambda v: v > 0)


def _non_negative_float(text):
    return _float(text, "a finite number >= 0", lambda v: v >= 0)


def _unit_interval(text):
    return _float(text, "a number in [0, 1)", lambda v: 0 <= v < 1)


def _device(text):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, refused up front where that device does not exist."""
    import torch

    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {text!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"expected a device that exists, got {text!r}: no CUDA GPU is available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"expected a device that exists, got {text!r}: there are "
                                         f"{torch.cuda.device_count()} CUDA devices")
    return text


MAX_WIDTH = 65536
"""The largest ``--latent-dim``, ``--hidden`` or ``--channels`` accepted (larger ones do not fit in memory)."""
MAX_SAMPLES = 100000
"""The most images ``pyrogen sample`` draws into one grid."""
MAX_STEP_ELEMENTS = 2**28
"""The most pixels one training step may hold (particles x batch x pixels): 1 GiB of float32 per tensor."""
BYTES_PER_PARAMETER = 16
"""float32 weight, gradient and Adam's two moments: what one trained parameter holds in memory."""


def _memory_bytes():
    """This machine's physical memory in bytes (8 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _check_mlp_fits(hidden, latent_dim, pixels=28 * 28):
    """Refuse, before anything is built, MLP widths whose training state cannot fit in half the memory."""
    widths = [pixels, *hidden]
    encoder = sum((a + 1) * b for a, b in zip(widths, widths[1:])) + (widths[-1] + 1) * 2 * latent_dim
    back = [latent_dim, *reversed(hidden), pixels]
    decoder = sum((a + 1) * b for a, b in zip(back, back[1:]))
    needed, available = (encoder + decoder) * BYTES_PER_PARAMETER, _memory_bytes() // 2
    if needed > available:
        raise PyrogenError(
            f"argument --hidden: expected networks whose weights, gradients and Adam state fit in half this "
            f"machine's memory ({available / 2**30:.1f} GiB), got --hidden {' '.join(map(str, hidden))} "
            f"--latent-dim {latent_dim}: {encoder + decoder:,} parameters, {needed / 2**30:.1f} GiB")


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line: ``pyrogen: error: argument --seed: expected ...`` (no usage block)."""

    def error(self, message):
        self.exit(2, f"pyrogen: error: {message}\n")


def _latent_family(vamp):
    """An argparse type: a registered latent family's name, ``erlang:k``, or (for the prior) ``vamp:K``."""
    def parse(text):
        import re

        from pyrogen.distributions import LatentFamilyError, get_family

        if vamp and re.fullmatch(r"vamp:[1-9][0-9]*", text):
            return text
        try:
            get_family(text)
        except LatentFamilyError as e:
            raise argparse.ArgumentTypeError(str(e) + ("" if not vamp else "; or vamp:K for the VampPrior")) from None
        return text
    return parse


def _flow(text):
    from pyrogen.distributions import LatentFamilyError
    from pyrogen.models.flows import parse_flow

    try:
        parse_flow(text)
    except LatentFamilyError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _sampler(text):
    import re

    match = re.fullmatch(r"gmm:([1-9][0-9]*)", text)
    if text != "prior" and match is None:
        raise argparse.ArgumentTypeError(f"expected 'prior' or 'gmm:K' with K >= 1 components, got {text!r}")
    return text


def _add_threads(p):
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads of torch (torch.set_num_threads); torch's default, one per core, "
                        "stalls when anything else runs on the machine, so give fewer on a shared one "
                        "(default: torch's)")


def _add_device(p):
    p.add_argument("--device", default="auto", type=_device,
                   help="'auto' (CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N' (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_threads(p)


def _add_vae_options(p):
    from pyrogen.config import AUTO_COMPILE_MIN_STEPS
    from pyrogen.distributions import FAMILIES, LIKELIHOODS
    from pyrogen.networks import ARCHITECTURES
    from pyrogen.training.vae import ELBO_CHOICES

    _add_run_options(p, resumed=" model, data and optimizer options are then read from the run, and")
    g = p.add_argument_group("model")
    g.add_argument("--latent-dim", type=_bounded_int(MAX_WIDTH), default=50, help="dimension of z (default: 50)")
    g.add_argument("--architecture", choices=ARCHITECTURES, default="mlp",
                   help="encoder/decoder networks (default: mlp)")
    g.add_argument("--hidden", type=_bounded_int(MAX_WIDTH), nargs="+", default=[400], metavar="WIDTH",
                   help="hidden widths of the encoder, mirrored by the decoder; for conv, the last "
                        "is the width of the dense layer (default: 400)")
    g.add_argument("--likelihood", choices=sorted(LIKELIHOODS), default="bernoulli",
                   help="observation likelihood p(x|z) (default: bernoulli)")
    g.add_argument("--prior", type=_latent_family(vamp=True), default="normal", metavar="FAMILY",
                   help=f"latent family of p(z): one of {', '.join(sorted(FAMILIES))}, erlang:k, or vamp:K, "
                        "the VampPrior with K learned pseudo-inputs (default: normal)")
    g.add_argument("--posterior", type=_latent_family(vamp=False), default="normal", metavar="FAMILY",
                   help="latent family of q(z|x) (of the flow's base distribution with --flow); the same "
                        "names as --prior but vamp (default: normal)")
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
                   help="Monte Carlo draws L per example and step (drawn in one vectorized run by --elbo "
                        "trace); K, the importance samples per example, of --elbo iwae (default: 1)")
    g.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 1e-3; 1.0 with --recipe he2019, 1e-3 with he2019-image)")
    g.add_argument("--elbo", choices=ELBO_CHOICES, default="auto",
                   help="the objective: auto picks meanfield where KL(q||p) of every latent site has a closed "
                        "form, else trace, and says which at the start; trace: Monte Carlo KL (Trace_ELBO); "
                        "meanfield: analytic KL (TraceMeanField_ELBO); iwae: the importance-weighted bound of "
                        "--num-particles draws per example (Burda et al. 2016); tc: β-TC-VAE (Chen et al. 2018), "
                        "logging index-code MI, total correlation and dimension-wise KL per epoch (default: auto)")
    g.add_argument("--dreg", action="store_true",
                   help="with --elbo iwae: doubly reparameterized guide gradients (Tucker et al. 2019)")
    g.add_argument("--tc-beta", type=float, default=None, metavar="B",
                   help="with --elbo tc: β, the weight of the total correlation (default: 6)")
    g.add_argument("--seed", type=_non_negative_int, default=0, help="random seed; seeded runs are reproducible")
    g.add_argument("--compile", choices=["auto", "on", "record", "off"], nargs="?", const="on", default="auto",
                   help="record: record the ELBO's tensor operations once per batch shape and replay them "
                        "(the eager step's numbers bit for bit, without Pyro's per-step Python; under a second "
                        "to record); on: also compile the recording with torch.compile (fastest step, about 10 s "
                        "to compile the first time on a 2-core CPU, 2 s once inductor's cache holds it); off: run the model and guide every step. "
                        f"auto: on when a C++ compiler works and the run has at least {AUTO_COMPILE_MIN_STEPS} "
                        "steps, record otherwise, off for --aggressive, under torchrun and with --dreg (a failed "
                        "recording or compilation falls back to the eager step with one line); a bare --compile "
                        "is on (default: auto; see docs/performance)")
    _add_optim_options(p)
    g.add_argument("--eval-samples", type=_non_negative_int, default=1000,
                   help="importance samples K for the final log p(x) on the test set; 0 skips it "
                        "(default: 1000)")
    _add_device(p)


def _add_optim_options(p):
    from pyrogen.optim import INITS, OPTIMIZERS, RECIPES, REDUCTIONS

    g = p.add_argument_group("optimisation (pyrogen.optim; --recipe he2019-image is He et al. 2019's image set-up, "
                             "he2019 their text set-up)")
    g.add_argument("--recipe", choices=RECIPES, default="default",
                   help="default: Adam 1e-3 on the batch-summed loss, PyTorch init, no clipping or decay; "
                        "he2019-image (their image.py): Adam 1e-3 on the per-example mean loss, clip 5, PyTorch "
                        "init, lr halved after 20 epochs above the best validation ELBO, at most 5 times; he2019 "
                        "(their text.py, never used on images by them): SGD lr 1.0 on the per-example mean loss, "
                        "clip 5, U(-0.01, 0.01) init, lr halved after 2 epochs without a better validation ELBO "
                        "from epoch 15, at most 5 times. Both need --validation-size and keep the image VAE's "
                        "encoder head (linear maps with biases to loc and log-variance, as their image encoder); "
                        "the options below override them (default: default)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="optimizer (default: adam)")
    g.add_argument("--loss-reduction", choices=REDUCTIONS, default=None,
                   help="differentiate the ELBO summed over the batch (sum) or averaged (mean, a step B times "
                        "smaller at the same lr); metrics are nats per example either way (default: sum)")
    g.add_argument("--clip-norm", type=float, default=None, metavar="C",
                   help="clip the global gradient norm of all parameters at C after every backward pass, the "
                        "aggressive inner loop's included; 0 is off (default: off)")
    g.add_argument("--init", choices=INITS, default=None,
                   help="uniform: every parameter from U(-0.01, 0.01) (default: default, PyTorch's)")
    g.add_argument("--lr-decay-epochs", type=_non_negative_int, default=None, metavar="N",
                   help="halve the learning rate after N epochs without a better validation ELBO, reloading the "
                        "best weights and restarting the optimizer; needs --validation-size; 0 is off (default: 0)")
    g.add_argument("--max-decay", type=_positive_int, default=None, metavar="M",
                   help="stop training after the M-th decay (default: 5)")
    g.add_argument("--decay-start-epoch", type=_non_negative_int, default=None, metavar="E",
                   help="decay only from 0-based epoch E on (default: 15, text.py's; 0 with --recipe he2019-image)")
    g.add_argument("--validation-size", type=_non_negative_int, default=0, metavar="N",
                   help="hold N random training images out as a validation split for the lr decay and the "
                        "aggressive switch; both need it, neither reads the test set (default: 0)")


def _optim_settings(args):
    """config["train"] keys of the optimisation options: the recipe's values, then the options given."""
    from pyrogen.optim import OptimConfig

    decay = None if args.lr_decay_epochs is None else args.lr_decay_epochs > 0
    try:
        c = OptimConfig.from_recipe(args.recipe, optimizer=args.optimizer, lr=args.lr,
                                    loss_reduction=args.loss_reduction, clip_norm=args.clip_norm, init=args.init,
                                    decay=decay, decay_epochs=args.lr_decay_epochs or None,
                                    max_decay=args.max_decay, decay_start_epoch=args.decay_start_epoch)
    except ValueError as e:
        raise PyrogenError(str(e)) from None
    if c.decay and not args.validation_size:
        raise PyrogenError("learning-rate decay on plateau watches a validation split of the training data, "
                           "never the test set; give --validation-size N")
    return {"recipe": args.recipe, "optimizer": c.optimizer, "lr": c.lr, "momentum": c.momentum,
            "loss_reduction": c.loss_reduction, "clip_norm": c.clip_norm, "init": c.init,
            "lr_decay_epochs": c.decay_epochs if c.decay else 0, "max_decay": c.max_decay,
            "decay_start_epoch": c.decay_start_epoch, "decay_reference": c.decay_reference,
            "validation_size": args.validation_size}


def _add_collapse_options(p):
    from pyrogen.infer.kl_schedule import KL_SCHEDULES

    g = p.add_argument_group("posterior collapse (KL weight λ, free bits, aggressive training)")
    g.add_argument("--kl-schedule", choices=KL_SCHEDULES, default="constant",
                   help="KL weight λ over training: constant (--kl-weight), linear warm-up from 0.1 to 1 "
                        "over --kl-warmup-epochs, or cyclical (Fu et al. 2019, --kl-cycles cycles over "
                        "--epochs); evaluation always uses λ = 1 (default: constant)")
    g.add_argument("--kl-weight", type=_positive_float, default=1.0, help="λ of the constant schedule (default: 1)")
    g.add_argument("--kl-warmup-epochs", type=_positive_float, default=10.0,
                   help="epochs of the linear warm-up (default: 10)")
    g.add_argument("--kl-cycles", type=_positive_int, default=4, help="cycles of the cyclical schedule (default: 4)")
    g.add_argument("--free-bits", type=_non_negative_float, default=0.0, metavar="NATS",
                   help="free bits: KL per latent dimension, averaged over the minibatch, floored at NATS "
                        "(Kingma et al. 2016; analytic KL); 0 is off (default: 0)")
    g.add_argument("--aggressive", action="store_true",
                   help="aggressive inference-network training (He et al. 2019) until the mutual "
                        "information of the validation split (--validation-size, required) stops improving")
    g.add_argument("--aggressive-patience", type=_positive_int, default=5,
                   help="epochs in which MI fails to beat its best before aggressive mode ends (default: 5)")


def _add_flow_options(p):
    p.add_argument_group("normalizing-flow guide").add_argument(
        "--flow", type=_flow, default=None, metavar="KIND:K",
        help="a normalizing-flow guide: the encoder's q(z|x) pushed through K amortized transforms, iaf:K "
             "(inverse autoregressive), planar:K or radial:K, e.g. iaf:2; KL(q||p) is then Monte Carlo, "
             "so --elbo meanfield is refused (default: none)")


def _add_layer_options(p):
    g = p.add_argument_group("two stochastic layers (Burda et al. 2016: z2 -> z1 -> x, MLP, normal latents)")
    g.add_argument("--layers", type=int, choices=[1, 2], default=1,
                   help="stochastic layers: 2 trains pyrogen.models.TwoLayerVAE, with --latent-dim and "
                        "--hidden for z1 and the next two options for z2 (default: 1)")
    g.add_argument("--top-latent-dim", type=_positive_int, default=None,
                   help="with --layers 2: dimension of z2 (default: half of --latent-dim)")
    g.add_argument("--top-hidden", type=_positive_int, nargs="+", default=None, metavar="WIDTH",
                   help="with --layers 2: hidden widths between z1 and z2 (default: the dimension of z2, twice)")


def build_parser():
    parser = _Parser(
        prog="pyrogen", description="Deep generative models as Pyro model/guide pairs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model", description="Train a model.")
    kinds = train.add_subparsers(dest="kind", required=True, metavar="MODEL")
    _add_vae_options(kinds.add_parser(
        "vae", help="variational autoencoder trained by SVI",
        description="Train a VAE by SVI (AEVB), print test ELBO and importance-sampled log p(x), "
                    "and write metrics, a checkpoint and PNG grids of samples and reconstructions."))
    _add_collapse_options(kinds.choices["vae"])
    _add_layer_options(kinds.choices["vae"])
    _add_flow_options(kinds.choices["vae"])
    kinds.choices["vae"].add_argument(
        "--conditional", action="store_true",
        help="conditional VAE: the label is an input of encoder and decoder (an MLP of --hidden widths, normal "
             "prior and posterior, constant KL weight); samples.png has one row per class")
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
    _add_adversarial_pair_options(kinds.add_parser(
        "ali", help="ALI / BiGAN: the VAE pair trained against a joint discriminator D(x, z)",
        description="Train a VAE pair as generator and encoder against a discriminator on (x, z) "
                    "(pyrogen.infer.AdversarialInference) and write metrics with health flags, test "
                    "reconstruction error and the linear-probe accuracy of the codes, a checkpoint and "
                    "sample and reconstruction grids per epoch."), "ali")
    _add_adversarial_pair_options(kinds.add_parser(
        "aae", help="adversarial autoencoder: reconstruction plus a discriminator on codes",
        description="Train a VAE pair as an adversarial autoencoder (pyrogen.infer.AdversarialAutoencoder) "
                    "and write metrics (test ELBO, reconstruction error, linear-probe accuracy, health flags), "
                    "a checkpoint and sample and reconstruction grids per epoch."), "aae")

    _add_feature_options(kinds.add_parser(
        "features", help="the Fashion-MNIST feature network of the sample-quality measures",
        description="Train pyrogen's Fashion-MNIST classifier by its fixed recipe (a few minutes on a CPU) "
                    "and cache it, SHA-256 checked, for the Fréchet distance and precision/recall of samples; "
                    "keeps a valid cached one unless --force."))

    ev = commands.add_parser(
        "evaluate", help="test ELBO and importance-sampled log p(x) of a run",
        description="Evaluate a run's checkpoint on its test data: ELBO and log p(x), nats per example.")
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--eval-samples", type=_positive_int, default=None,
                    help="importance samples K per example (default: 1000; not for an autoencoder run, "
                         "whose test objective is evaluated)")
    ev.add_argument("--num-samples", type=_positive_int, default=None, dest="deprecated_num_samples",
                    help=argparse.SUPPRESS)  # the old name of --eval-samples, kept working
    ev.add_argument("--test-size", type=_positive_int, default=None, help="evaluate the first N test images")
    ev.add_argument("--seed", type=_non_negative_int, default=0,
                    help="random seed of the importance samples; results go to "
                         "RUN_DIR/evaluations/log-px-K<K>-seed<SEED>-epoch<E>-test<N>.json (default: 0)")
    _add_device(ev)

    sm = commands.add_parser("sample", help="draw samples from a run's model as a PNG grid",
                             description="Decode draws z ~ p(z) and save the mean images as a PNG grid.")
    sm.add_argument("run_dir", metavar="RUN_DIR")
    sm.add_argument("-n", "--num-samples", type=_bounded_int(MAX_SAMPLES), default=64, help="images (default: 64)")
    sm.add_argument("--out", default=None,
                    help="PNG path (default: RUN_DIR/samples-epoch<E>-n<N>-seed<SEED>.png, with -gmm<K> after "
                         "'samples' for --sampler gmm:K and -label<C> for --label C; titled; a number is appended "
                         "rather than overwrite an earlier picture)")
    sm.add_argument("--sampler", type=_sampler, default="prior", metavar="prior|gmm:K",
                    help="where codes come from: the model's prior p(z), or gmm:K, a K-component Gaussian mixture "
                         "fitted to the codes of the training images (Ghosh et al. 2020; the way to sample an "
                         "autoencoder, e.g. gmm:10) (default: prior)")
    sm.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    sm.add_argument("--label", type=int, default=None, metavar="CLASS",
                    help="class-conditional runs: draw every sample of this class (default: a grid with one "
                         "row per class)")
    _add_device(sm)

    sq = commands.add_parser(
        "sample-quality", help="Fréchet distance, precision and recall of a run's samples",
        description="Score samples of a run's model (VAE, autoencoder or GAN) against the test images in the "
                    "features of pyrogen's Fashion-MNIST classifier (train it once with 'pyrogen train features').")
    sq.add_argument("run_dir", metavar="RUN_DIR")
    sq.add_argument("-n", "--num-samples", type=_positive_int, default=10000,
                    help="samples, scored against as many test images (default: 10000)")
    sq.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
    _add_device(sq)

    pl = commands.add_parser(
        "plot", help="write a run's pictures as PNG",
        description="Reconstructions, prior samples, latent traversals, interpolations, the 2-D "
                    "manifold (latent dimension 2 only), latent codes by class and training curves.")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, metavar="DIR", help="folder for the PNGs (default: RUN_DIR/plots)")
    pl.add_argument("--num-points", type=_positive_int, default=5000,
                    help="test images in the latent-code scatter plot (default: 5000)")
    pl.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: 0)")
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
    return result


def _write_evaluation(trainer, result):
    """Write the evaluation into the run after it was printed, so a failed write loses nothing: its file
    is named by its settings (K, seed, epoch, test images), so no evaluation replaces another."""
    from pyrogen.files import log_px_evaluation_name

    if trainer.run is None:
        return
    name = log_px_evaluation_name(result["num_samples"], result["seed"], result["epoch"], result["num_examples"])
    try:
        trainer.run.write_json(name, result)
    except OSError as e:
        raise PyrogenError(f"cannot write {trainer.run.file(name)!r}: {e.strerror or e}; "
                           "the evaluation above was not saved") from None


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
    if args.kind in ("ali", "aae"):
        return _train_adversarial_pair(args)
    return _train_vae(args)


def _add_run_options(p, pictures="pictures", resumed=""):
    """``--out RUN_DIR`` and ``--resume``, the options every ``pyrogen train`` kind shares."""
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help=f"run directory for config.json, metrics.csv, checkpoint.pt and {pictures}; "
                        "must not already hold a run unless --resume is given")
    p.add_argument("--resume", action="store_true",
                   help=f"continue the run in RUN_DIR from its last checkpoint, exactly;{resumed} "
                        "--epochs is the new total")


def _add_gan_options(p):
    """Options of ``pyrogen train gan``."""
    from pyrogen.infer.gan_losses import GAN_LOSSES
    from pyrogen.models.gan import ARCHITECTURES, NORMS

    _add_run_options(p, pictures="sample grids")
    g = p.add_argument_group("networks")
    g.add_argument("--architecture", choices=ARCHITECTURES, default="dcgan",
                   help="generator and discriminator (default: dcgan)")
    g.add_argument("--latent-dim", type=_bounded_int(MAX_WIDTH), default=100, help="dimension of z (default: 100)")
    g.add_argument("--hidden", type=_bounded_int(MAX_WIDTH), nargs="+", default=[256, 256], metavar="WIDTH",
                   help="hidden widths of the MLP players (default: 256 256)")
    g.add_argument("--channels", type=_bounded_int(MAX_WIDTH), default=64,
                   help="feature maps of the DCGAN players (default: 64)")
    g.add_argument("--norm", choices=NORMS, default=None,
                   help="discriminator normalisation: batch, spectral or none (default: none for wgan-gp and "
                        "the MLP, batch for DCGAN)")
    g.add_argument("--conditional", action="store_true",
                   help="class-conditional GAN: a generator G(z, y) against a projection discriminator on an MLP "
                        "of --hidden widths, trained on the labelled data; the sample grid has one row per class")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="data set (default: fashion-mnist)")
    g.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    g.add_argument("--train-size", type=_positive_int, default=None, help="use only the first N training images")
    g.add_argument("--test-size", type=_positive_int, default=None, help="use only the first N test images")
    g = p.add_argument_group("training (the adversarial game)")
    g.add_argument("--loss", choices=sorted(GAN_LOSSES), default="nonsaturating",
                   help="the game (default: nonsaturating)")
    g.add_argument("--gp-weight", type=_non_negative_float, default=10.0, help="λ of WGAN-GP's gradient penalty (default: 10)")
    g.add_argument("--d-steps", type=_positive_int, default=1,
                   help="discriminator updates per generator update, each on a fresh batch (default: 1)")
    g.add_argument("--epochs", type=_positive_int, default=10, help="epochs in total (default: 10)")
    g.add_argument("--batch-size", type=_positive_int, default=64, help="minibatch size (default: 64)")
    g.add_argument("--lr-g", type=_positive_float, default=2e-4, help="generator's Adam learning rate (default: 2e-4)")
    g.add_argument("--lr-d", type=_positive_float, default=2e-4,
                   help="discriminator's Adam learning rate (default: 2e-4)")
    g.add_argument("--beta1", type=_unit_interval, default=0.5, help="Adam's beta1 for both players (default: 0.5)")
    g.add_argument("--beta2", type=_unit_interval, default=0.999, help="Adam's beta2 for both players (default: 0.999)")
    g.add_argument("--ema-decay", type=_unit_interval, default=0.0,
                   help="moving average of the generator's weights for samples (e.g. 0.999); 0 is off (default: 0)")
    g.add_argument("--seed", type=_non_negative_int, default=0, help="random seed; seeded runs are reproducible")
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
        return _conditional(args, config)

    trainer = _resume_or_start(args, resume_gan_trainer, build_gan_trainer, make_config)
    trainer.fit()
    if distributed.is_main_process():
        print(f"wrote {trainer.run.file('samples.png')}")
    return 0


def _add_adversarial_pair_options(p, kind):
    """Options of ``pyrogen train ali`` and ``pyrogen train aae``."""
    from pyrogen.distributions import FAMILIES, LIKELIHOODS
    from pyrogen.infer.gan_losses import GAN_LOSSES
    from pyrogen.networks import ARCHITECTURES

    ali = kind == "ali"
    _add_run_options(p)
    g = p.add_argument_group("the VAE pair")
    g.add_argument("--latent-dim", type=_positive_int, default=64 if ali else 8,
                   help=f"dimension of z (default: {64 if ali else 8})")
    architecture, hidden = ("dcgan", 256) if ali else ("mlp", 400)
    g.add_argument("--architecture", choices=ARCHITECTURES, default=architecture,
                   help=f"encoder/decoder; dcgan: convolutions with batch norm, ALI's (default: {architecture})")
    g.add_argument("--hidden", type=_positive_int, nargs="+", default=[hidden], metavar="WIDTH",
                   help=f"hidden widths of the encoder, mirrored by the decoder; for conv and dcgan, the width of "
                        f"the linear layer after the convolutions (default: {hidden})")
    default_likelihood = "bernoulli-relaxed" if ali else "bernoulli"  # ALI: the sigmoid mean (default_ali_config)
    g.add_argument("--likelihood", choices=sorted(LIKELIHOODS), default=default_likelihood,
                   help=f"p(x|z) (default: {default_likelihood})")
    g.add_argument("--prior", choices=sorted(FAMILIES), default="normal", help="latent family of p(z)")
    g.add_argument("--posterior", choices=sorted(FAMILIES), default="normal", help="latent family of q(z|x)")
    if ali:
        g.add_argument("--disc-hidden", type=_positive_int, nargs="+", default=None, metavar="WIDTH",
                       help="hidden widths of each of the discriminator's MLPs, on x (after its convolutions), on "
                            "z and joint (default: ALI's 256 on x, 256 256 on z and 512 512 joint with the dcgan "
                            "pair; else 256 256)")
    else:
        g.add_argument("--disc-hidden", type=_positive_int, nargs="+", default=[256, 256], metavar="WIDTH",
                       help="hidden widths of the discriminator's MLP (default: 256 256)")
    if ali:
        g.add_argument("--disc-architecture", choices=["dcgan", "mlp"], default=None,
                       help="the discriminator's branch on x: dcgan (two convolutions) or mlp (default: dcgan for "
                            "the dcgan and conv pairs, else mlp)")
        g.add_argument("--disc-dropout", type=float, default=0.2,
                       help="dropout before every layer of the discriminator, as ALI's; 0 is none (default: 0.2)")
        g.add_argument("--update", choices=["simultaneous", "alternating"], default="simultaneous",
                       help="ALI's simultaneous update (both players' gradients from one scoring of the pairs) or "
                            "DCGAN's alternating one (the players against the updated discriminator) "
                            "(default: simultaneous)")
        g.add_argument("--model-x", choices=["sample", "mean"], default="mean",
                       help="the model's x in its pairs: the decoder mean E[x|z] (BiGAN's generator; any "
                            "likelihood) or a reparameterized draw of p(x|z) (not the Bernoulli) (default: mean)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="data set (default: fashion-mnist)")
    g.add_argument("--data-dir", default=None, help="directory holding the data set's files")
    g.add_argument("--binarize", choices=BINARIZATIONS, default=None,
                   help="binarization of the grey levels (default: the likelihood's, as for train vae)")
    g.add_argument("--train-size", type=_positive_int, default=None, help="use only the first N training images")
    g.add_argument("--test-size", type=_positive_int, default=None, help="use only the first N test images")
    g = p.add_argument_group("training")
    g.add_argument("--loss", choices=sorted(GAN_LOSSES), default="nonsaturating", help="the game (default: nonsaturating)")
    g.add_argument("--gp-weight", type=float, default=10.0, help="λ of WGAN-GP's gradient penalty (default: 10)")
    g.add_argument("--d-steps", type=_positive_int, default=1,
                   help="discriminator updates per generator update (default: 1)")
    g.add_argument("--epochs", type=_positive_int, default=10, help="epochs in total (default: 10)")
    g.add_argument("--batch-size", type=_positive_int, default=100, help="minibatch size (default: 100)")
    if ali:
        g.add_argument("--lr-g", type=_positive_float, default=1e-4,
                       help="Adam learning rate of generator and encoder (default: 1e-4, ALI's)")
    else:
        g.add_argument("--lr", type=_positive_float, default=1e-3, help="autoencoder's Adam learning rate (default: 1e-3)")
        g.add_argument("--adversarial-weight", type=float, default=1.0,
                       help="weight of the code discriminator's generator loss; 0 is a plain autoencoder (default: 1)")
    lr_d = "1e-4" if ali else "2e-4"
    g.add_argument("--lr-d", type=_positive_float, default=float(lr_d),
                   help=f"discriminator's Adam learning rate (default: {lr_d})")
    g.add_argument("--probe-size", type=_non_negative_int, default=2000,
                   help="training and test images of the linear probe of the codes after every epoch; 0 is off "
                        "(default: 2000)")
    g.add_argument("--seed", type=_non_negative_int, default=0, help="random seed; seeded runs are reproducible")
    _add_device(p)


def _train_adversarial_pair(args):
    """``pyrogen train ali|aae``: build or resume the run, train it, print where its pictures are."""
    from pyrogen.config import default_aae_config, default_ali_config
    from pyrogen.errors import DataError

    if args.kind == "ali":
        from pyrogen.training.ali import build_ali_trainer as build, resume_ali_trainer as resume
    else:
        from pyrogen.training.aae import build_aae_trainer as build, resume_aae_trainer as resume

    def make_config():
        model = dict(latent_dim=args.latent_dim, architecture=args.architecture, hidden=tuple(args.hidden),
                     likelihood=args.likelihood, prior=args.prior, posterior=args.posterior, loss=args.loss,
                     disc_hidden=None if args.disc_hidden is None else tuple(args.disc_hidden))
        if args.kind == "ali":
            if not 0 <= args.disc_dropout < 1:
                raise DataError(f"--disc-dropout must be a probability in [0, 1), got {args.disc_dropout}")
            config = default_ali_config(model_x=args.model_x, disc_architecture=args.disc_architecture,
                                        disc_dropout=args.disc_dropout, update=args.update, **model)
            config["train"].update(lr_g=args.lr_g)
        else:
            if not args.adversarial_weight >= 0:
                raise DataError(f"--adversarial-weight must be >= 0, got {args.adversarial_weight}")
            config = default_aae_config(adversarial_weight=args.adversarial_weight, **model)
            config["train"].update(lr=args.lr)
        config["data"].update(dataset=args.dataset, root=args.data_dir,
                              binarize=args.binarize or config["data"]["binarize"],
                              train_size=args.train_size, test_size=args.test_size)
        config["train"].update(epochs=args.epochs, batch_size=args.batch_size, gp_weight=args.gp_weight,
                               d_steps=args.d_steps, lr_d=args.lr_d, probe_size=args.probe_size, seed=args.seed)
        return config

    trainer = _resume_or_start(args, resume, build, make_config)
    trainer.fit()
    for name in ("samples.png", "reconstructions.png"):
        print(f"wrote {trainer.run.file(name)}")
    return 0


def _conditional(args, config):
    """``--conditional``: the class-conditional version of ``config``."""
    if not getattr(args, "conditional", False):
        return config
    from pyrogen.config import conditional_gan_config
    from pyrogen.errors import DataError

    if args.norm == "batch":
        raise DataError("--conditional uses a projection discriminator, which takes --norm spectral or none, "
                        "not batch")
    return conditional_gan_config(config)


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


def _load_trainer(resume, run_dir, **kwargs):
    """``resume(run_dir, **kwargs)``, with a checkpoint whose contents do not fit its run as one line."""
    from pyrogen.errors import CheckpointError
    from pyrogen.files import RunDir

    try:
        return resume(run_dir, **kwargs)
    except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as e:
        if isinstance(e, PyrogenError):
            raise
        what = " ".join(str(e).split())[:300] or repr(e)
        raise CheckpointError(f"the checkpoint {RunDir(run_dir).checkpoint_path!r} does not fit the run it is in "
                              f"({type(e).__name__}: {what})") from None


def _resume_or_start(args, resume, build, make_config):
    """The trainer of ``pyrogen train KIND``: the run in ``--out`` resumed (``--epochs`` the new
    total), or a new run of the configuration ``make_config()`` returns."""
    from pyrogen.errors import CheckpointError, RunDirError
    from pyrogen.files import RunDir, remove_stale_temporaries
    from pyrogen.runs import open_run, start_run

    progress = not args.no_progress
    distributed.init_from_env(args.device)
    if args.resume:
        run = open_run(args.out, "cpu")
        command = {"cvae": "vae"}.get(run.kind, run.kind)  # a conditional VAE is 'train vae --conditional'
        if command != args.kind:
            raise RunDirError(f"--out {args.out!r} holds a {run.kind} run, not a {args.kind} run; resume it "
                              f"with 'pyrogen train {command} --out {args.out} --resume'")
        missing = [k for k in ("model", "data", "train") if not isinstance(run.config.get(k), dict)]
        if missing:
            raise RunDirError(f"{run.dir.file('config.json')!r} lacks {', '.join(map(repr, missing))}; expected "
                              "the configuration that 'pyrogen train' wrote")
        if not os.access(run.path, os.W_OK):
            raise RunDirError(f"--out {args.out!r} is not writable; a resumed run writes its checkpoints there")
        remove_stale_temporaries(run.path)  # left by a process killed while it wrote
        if run.dir.never_finished_an_epoch():  # stopped in its first epoch: start it again as it was made
            config = run.config
            config["train"]["epochs"] = args.epochs
            trainer = build(config, device=args.device, progress=progress)
            trainer.run = RunDir(run.path) if distributed.is_main_process() else None
            return trainer
        trainer = _load_trainer(resume, args.out, device=args.device, progress=progress)
        done = trainer.epoch
        if args.epochs <= done:
            raise PyrogenError(f"argument --epochs: expected more than the {done} epochs the run in "
                               f"{args.out!r} has done (--epochs is the new total), got {args.epochs}")
        if trainer.config["train"].get("kl_schedule") == "cyclical" and args.epochs != trainer.config["train"]["epochs"]:
            print(f"pyrogen: note: the cyclical KL schedule keeps its {trainer.config['train']['epochs']}-epoch "
                  f"cycles; after epoch {trainer.config['train']['epochs']} the KL weight stays 1", file=sys.stderr)
        trainer.config["train"]["epochs"] = args.epochs
        return trainer
    config = make_config()
    if os.path.isdir(args.out) and not RunDir(args.out).holds_run():
        remove_stale_temporaries(args.out)
    return start_run(args.out, config, lambda: build(config, device=args.device, progress=progress))


def _two_layer_model(args):
    """TwoLayerVAE's arguments from ``train vae --layers 2``'s options."""
    if args.architecture != "mlp" or args.prior != "normal" or args.posterior != "normal":
        raise PyrogenError("--layers 2 is an MLP with normal latents; drop --architecture, --prior and --posterior")
    top = args.top_latent_dim or max(1, args.latent_dim // 2)
    return {"model": "two-layer", "latent_dims": (args.latent_dim, top), "likelihood": args.likelihood,
            "hidden": (tuple(args.hidden), tuple(args.top_hidden or (top, top)))}


def _check_objective_options(args):
    """--dreg and --tc-beta belong to one objective each; given with another they would do nothing."""
    if args.dreg and args.elbo != "iwae":
        raise PyrogenError(f"--dreg applies to --elbo iwae, not --elbo {args.elbo}")
    if args.tc_beta is not None and args.elbo != "tc":
        raise PyrogenError(f"--tc-beta applies to --elbo tc, not --elbo {args.elbo}")
    if getattr(args, "layers", 1) == 1 and (getattr(args, "top_latent_dim", None) or getattr(args, "top_hidden", None)):
        raise PyrogenError("--top-latent-dim and --top-hidden apply to --layers 2")


def _train_vae(args):
    from pyrogen.config import default_config
    from pyrogen.training.vae import build_trainer, resume_trainer

    def make_config():
        if args.kind == "ae" and args.eval_samples:
            raise PyrogenError("--eval-samples must be 0 for an autoencoder: its guide is a point mass, "
                               "which has no importance weights, so log p(x) cannot be estimated")
        _check_objective_options(args)
        if args.architecture == "mlp":
            _check_mlp_fits(args.hidden, args.latent_dim)
        flow = {"flow": args.flow} if getattr(args, "flow", None) else {}
        if getattr(args, "layers", 1) == 2:
            if flow:
                raise PyrogenError("--flow transforms the one-layer VAE's guide; drop --flow or --layers 2")
            config = default_config(kind=args.kind, **_two_layer_model(args))
        else:
            config = default_config(kind=args.kind, latent_dim=args.latent_dim, architecture=args.architecture,
                                    hidden=tuple(args.hidden), likelihood=args.likelihood,
                                    prior=args.prior, posterior=args.posterior, **flow)
        config["data"].update(dataset=args.dataset, root=args.data_dir,
                              binarize=args.binarize or config["data"]["binarize"],
                              train_size=args.train_size, test_size=args.test_size)
        config["train"].update(_optim_settings(args))
        config["train"].update(epochs=args.epochs, batch_size=args.batch_size,
                               elbo=args.elbo, num_particles=args.num_particles, seed=args.seed,
                               compile=args.compile, dreg=args.dreg)
        if args.tc_beta is not None:
            config["train"]["tc_beta"] = args.tc_beta
        if args.kind == "vae":
            if args.aggressive and not args.validation_size:
                raise PyrogenError("--aggressive leaves aggressive mode when the mutual information of a "
                                   "validation split stops improving, never the test set's; give --validation-size N")
            config["train"].update(kl_schedule=args.kl_schedule, kl_weight=args.kl_weight,
                                   kl_warmup_epochs=args.kl_warmup_epochs, kl_cycles=args.kl_cycles,
                                   free_bits=args.free_bits, aggressive=args.aggressive,
                                   aggressive_patience=args.aggressive_patience)
        config["eval"]["num_samples"] = args.eval_samples
        pixels = 28 * 28  # every data set of DATASETS
        if args.num_particles * args.batch_size * pixels > MAX_STEP_ELEMENTS:
            raise PyrogenError(f"argument --num-particles: expected at most "
                               f"{MAX_STEP_ELEMENTS // (args.batch_size * pixels)} particles for --batch-size "
                               f"{args.batch_size} (a step's {args.num_particles} x {args.batch_size} images "
                               f"would not fit in memory), got {args.num_particles}")
        return config

    if getattr(args, "conditional", False) or (args.resume and _run_kind(args.out) == "cvae"):
        return _train_cvae(args)
    trainer = _resume_or_start(args, resume_trainer, build_trainer, make_config)
    trainer.fit()
    if not distributed.is_main_process():
        return 0
    if trainer.decay is not None:  # He et al. evaluate the best-validation weights
        trainer.decay.restore_best()
        print(f"evaluating the best validation epoch's weights (epoch {trainer.decay.best_epoch + 1})")
    for path in _write_training_pictures(trainer):
        print(f"wrote {path}")
    result = _evaluate(trainer, trainer.config["eval"]["num_samples"])
    _report(result)
    _write_evaluation(trainer, result)
    return 0


def _run_kind(path):
    from pyrogen.files import RunDir

    return RunDir(path).config.get("kind") if RunDir(path).holds_run() else None


def _train_cvae(args):
    """``pyrogen train vae --conditional``: a conditional VAE run (kind ``"cvae"``)."""
    from pyrogen.config import default_cvae_config
    from pyrogen.training.cvae import build_cvae_trainer, resume_cvae_trainer

    def make_config():
        unsupported = [flag for flag, used in (
            ("--architecture conv", args.architecture != "mlp"), ("--prior", args.prior != "normal"),
            ("--posterior", args.posterior != "normal"), ("--kl-schedule", args.kl_schedule != "constant"),
            ("--kl-weight", args.kl_weight != 1.0), ("--free-bits", args.free_bits > 0),
            ("--aggressive", args.aggressive), (f"--compile {args.compile}", args.compile in ("on", "record"))) if used]
        if unsupported:
            raise PyrogenError(f"--conditional trains the conditional VAE (MLP, normal prior and posterior, "
                               f"KL weight 1), which does not take {', '.join(unsupported)}")
        config = default_cvae_config(latent_dim=args.latent_dim, hidden=tuple(args.hidden), likelihood=args.likelihood)
        config["data"].update(dataset=args.dataset, root=args.data_dir,
                              binarize=args.binarize or config["data"]["binarize"],
                              train_size=args.train_size, test_size=args.test_size)
        config["train"].update(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, elbo=args.elbo,
                               num_particles=args.num_particles, seed=args.seed)
        return config

    trainer = _resume_or_start(args, resume_cvae_trainer, build_cvae_trainer, make_config)
    trainer.fit()
    for path in trainer.write_pictures():
        print(f"wrote {path}")
    print(f"test ELBO {trainer.evaluate()['elbo']:.2f} nats (given the test labels)")
    return 0


def _evaluate_run(args):
    from pyrogen.runs import open_run
    from pyrogen.training.vae import resume_trainer

    kind = open_run(args.run_dir).kind
    if kind == "cvae":
        raise PyrogenError("pyrogen evaluate does not take conditional VAE runs yet; their test ELBO given the "
                           "labels is in metrics.csv (test_elbo)")
    if kind in ("ali", "aae"):  # a VAE pair trained adversarially: its guide is a density
        from pyrogen.training.aae import resume_aae_trainer
        from pyrogen.training.ali import resume_ali_trainer

        resume_trainer = resume_ali_trainer if kind == "ali" else resume_aae_trainer
    if kind == "gan":
        raise PyrogenError("a GAN's generator is an implicit model with no density, so it has no ELBO or "
                           f"log p(x); score its samples with 'pyrogen sample-quality {args.run_dir}' "
                           "(Fréchet distance, precision and recall) instead")
    trainer = _load_trainer(resume_trainer, args.run_dir, device=args.device, progress=not args.no_progress)
    if args.test_size:
        trainer.test_data = trainer.test_data[: args.test_size]
    num_samples = args.eval_samples
    if args.deprecated_num_samples is not None:
        print("pyrogen: warning: 'evaluate --num-samples' is deprecated; use --eval-samples, the name "
              "'train' uses for the same K", file=sys.stderr)
        num_samples = args.deprecated_num_samples
    if trainer.config.get("kind") == "ae":  # no importance weights: its objective, and no log p(x)
        if num_samples is not None:
            raise PyrogenError("argument --eval-samples: an autoencoder run has no log p(x) to estimate (its guide "
                               "is a point mass); omit --eval-samples to evaluate its test objective")
        num_samples = 0
    result = _evaluate(trainer, 1000 if num_samples is None else num_samples, seed=args.seed,
                       command="pyrogen evaluate")
    _report(result)
    _write_evaluation(trainer, result)
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

    from pyrogen.files import check_not_run_file, unused_path
    from pyrogen.plotting import plot_image_grid

    if args.out is not None:
        check_not_run_file(args.out)
    run = open_run(args.run_dir, device=args.device)
    stem, nrow = "samples", 8
    if args.sampler == "prior":
        vae = run.model()
        pyro.set_rng_seed(args.seed)
        images, nrow = _conditional_samples(vae, args)
        what = "draws z ~ p(z)"
        if getattr(vae, "num_classes", None) is not None:
            stem += "-by-class" if args.label is None else f"-label{args.label}"
            what += ", one row per class" if args.label is None else f" of class {args.label}"
    else:
        from pyrogen.evaluation.gmm_sampler import fit_run_gmm

        components = int(args.sampler.split(":")[1])
        sampler = fit_run_gmm(run, n_components=components, seed=args.seed)
        pyro.set_rng_seed(args.seed)
        images = sampler.sample_images(args.num_samples)
        stem, what = f"samples-gmm{components}", f"draws z from a {components}-component mixture fitted to the codes"
    if args.out:  # the user's own file, written as it always was
        out = os.path.abspath(args.out)
        path = RunDir(os.path.dirname(out)).save_image(os.path.basename(out), images, nrow=nrow)
    else:  # named by its settings, and never over an earlier picture
        epoch = run.checkpoint["epoch"]
        path = plot_image_grid(
            images, unused_path(run.dir.file(f"{stem}-epoch{epoch}-n{args.num_samples}-seed{args.seed}.png")),
            f"Mean images of {images.shape[0]} {what}, seed {args.seed}, checkpoint of epoch {epoch}", ncol=nrow)
    print(f"wrote {path}")
    return 0


def _conditional_samples(model, args):
    """``(images, nrow)`` for ``pyrogen sample``: of class ``--label``, or one grid row per class,
    for a class-conditional model; plain draws otherwise."""
    import torch

    num_classes = getattr(model, "num_classes", None)
    if num_classes is None:
        if args.label is not None:
            raise PyrogenError(f"--label needs a class-conditional run, and {args.run_dir!r} is not one")
        return model.sample(args.num_samples), 8
    if args.label is not None:
        if not 0 <= args.label < num_classes:
            raise PyrogenError(f"--label {args.label} is outside the run's classes 0 .. {num_classes - 1}")
        return model.sample(args.num_samples, y=args.label), 8
    per_class = max(1, args.num_samples // num_classes)
    device = next(model.buffers()).device
    labels = torch.arange(num_classes, device=device).repeat_interleave(per_class)
    return model.sample(labels.shape[0], y=labels), per_class


def _plot_run(args):
    from pyrogen.plotting import plot_run

    for path in plot_run(args.run_dir, out_dir=args.out, device=args.device, seed=args.seed,
                         num_points=args.num_points):
        print(f"wrote {path}")
    return 0


def _report_run(args):
    from pyrogen.files import check_not_run_file
    from pyrogen.report import write_report

    if args.out is not None:
        check_not_run_file(args.out)
    print(f"wrote {write_report(args.run_dir, args.out)}")
    return 0


def _terminate(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def _interrupted(args, e):
    """The line for an interrupted command: what was kept, and how to continue."""
    why = "terminated (SIGTERM)" if str(e) == "SIGTERM" else "interrupted"
    if args.command != "train" or args.kind == "features":
        return f"pyrogen: {why}; nothing more was written"
    checkpoint = os.path.join(args.out, "checkpoint.pt")
    if os.path.isfile(checkpoint):
        return (f"pyrogen: {why}; the checkpoint of the last finished epoch is kept in {checkpoint!r}: "
                f"continue with 'pyrogen train {args.kind} --out {args.out} --resume'")
    return f"pyrogen: {why} before the first epoch finished; no checkpoint was written, {args.out!r} can be used again"


def main(argv=None):
    import torch

    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "evaluate": _evaluate_run, "sample": _sample_run,
                "plot": _plot_run, "report": _report_run,
                "sample-quality": _sample_quality_run}
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:  # SIGTERM stops like Ctrl-C: temporary files removed, one line said
        signal.signal(signal.SIGTERM, _terminate)
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
    except (MemoryError, RuntimeError) as e:  # torch's allocators raise RuntimeError (OutOfMemoryError on CUDA)
        if not isinstance(e, MemoryError) and "allocate" not in str(e) and "out of memory" not in str(e):
            raise
        print("pyrogen: error: out of memory; expected smaller networks (--hidden, --latent-dim), batches or "
              "sample counts", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only directory, a path whose parent is missing or a file
        where = f" {e.filename!r}" if e.filename else ""
        print(f"pyrogen: error: cannot read or write{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(_interrupted(args, e), file=sys.stderr)
        return 143 if str(e) == "SIGTERM" else 130
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)
        torch.set_num_threads(threads)  # main() called from Python leaves torch as it found it
