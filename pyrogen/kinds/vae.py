"""Run kind ``"vae"``: a variational autoencoder trained by SVI (``pyrogen train vae``).

Also the home of the options ``pyrogen train ae`` shares (:mod:`pyrogen.kinds.ae`) and of
``--conditional``, which makes a conditional VAE run (:mod:`pyrogen.kinds.cvae`).
"""

import os

from pyrogen.errors import PyrogenError
from pyrogen.kinds import options as O
from pyrogen.kinds.base import RunKind, lazy


def add_options(p):
    """Options of ``pyrogen train vae`` and ``pyrogen train ae``."""
    from pyrogen.distributions import FAMILIES, LIKELIHOODS
    from pyrogen.networks import ARCHITECTURES, INPUT_TRANSFORMS
    from pyrogen.settings import AUTO_COMPILE_MIN_STEPS, COMPILE_MODES, ELBO_NAMES

    O.add_run(p, resumed=" model, data and optimizer options are then read from the run, and")
    g = p.add_argument_group("model")
    g.add_argument("--latent-dim", type=O.bounded_int(O.MAX_WIDTH), default=50, help="dimension of z (default: 50)")
    g.add_argument(
        "--architecture", choices=ARCHITECTURES, default="mlp", help="encoder/decoder networks (default: mlp)"
    )
    g.add_argument(
        "--hidden",
        type=O.bounded_int(O.MAX_WIDTH),
        nargs="+",
        default=[400],
        metavar="WIDTH",
        help="hidden widths of the encoder, mirrored by the decoder; for conv, the last "
        "is the width of the dense layer (default: 400)",
    )
    g.add_argument(
        "--likelihood",
        choices=sorted(LIKELIHOODS) + ["auto"],
        default="bernoulli",
        help="observation likelihood p(x|z); auto picks one from the training data (binary, [0, 1], "
        "non-negative integers, real) and says which and why (default: bernoulli; docs: own_data)",
    )
    g.add_argument(
        "--input-transform",
        choices=INPUT_TRANSFORMS,
        default="none",
        help="what the encoder does to x first: log1p feeds it log(1 + x), for counts (default: none)",
    )
    g.add_argument(
        "--prior",
        type=O.latent_family(vamp=True),
        default="normal",
        metavar="FAMILY",
        help=f"latent family of p(z): one of {', '.join(sorted(FAMILIES))}, erlang:k, or vamp:K, "
        "the VampPrior with K learned pseudo-inputs (default: normal)",
    )
    g.add_argument(
        "--posterior",
        type=O.latent_family(vamp=False),
        default="normal",
        metavar="FAMILY",
        help="latent family of q(z|x) (of the flow's base distribution with --flow); the same "
        "names as --prior but vamp (default: normal)",
    )
    O.add_data(
        p,
        binarize="binarization of the grey levels: resampled every epoch (dynamic), drawn once (static), "
        "or none (default: dynamic for the bernoulli likelihood, none for likelihoods of grey "
        "levels)",
    )
    g = p.add_argument_group("training (AEVB: minibatch M, L particles, Adam)")
    O.add_epochs_and_batch(g, 100, "minibatch size M")
    g.add_argument(
        "--num-particles",
        type=O.positive_int,
        default=1,
        help="Monte Carlo draws L per example and step (drawn in one vectorized run by --elbo "
        "trace); K, the importance samples per example, of --elbo iwae (default: 1)",
    )
    g.add_argument(
        "--lr",
        type=O.positive_float,
        default=None,
        help="learning rate (default: 1e-3; 1.0 with --recipe he2019, 1e-3 with he2019-image)",
    )
    g.add_argument(
        "--elbo",
        choices=ELBO_NAMES,
        default="auto",
        help="the objective: auto picks meanfield where KL(q||p) of every latent site has a closed "
        "form, else trace, and says which at the start; trace: Monte Carlo KL (Trace_ELBO); "
        "meanfield: analytic KL (TraceMeanField_ELBO); iwae: the importance-weighted bound of "
        "--num-particles draws per example (Burda et al. 2016); tc: β-TC-VAE (Chen et al. 2018), "
        "logging index-code MI, total correlation and dimension-wise KL per epoch (default: auto)",
    )
    g.add_argument(
        "--dreg",
        action="store_true",
        help="with --elbo iwae: doubly reparameterized guide gradients (Tucker et al. 2019)",
    )
    g.add_argument(
        "--tc-beta",
        type=O.finite_float,
        default=None,
        metavar="B",
        help="with --elbo tc: β, the weight of the total correlation (default: 6)",
    )
    O.add_seed(g)
    g.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        nargs="?",
        const="on",
        default="auto",
        help="record: record the ELBO's tensor operations once per batch shape and replay them "
        "(the eager step's numbers bit for bit, without Pyro's per-step Python; under a second "
        "to record); on: also compile the recording with torch.compile (fastest step, about 10 s "
        "to compile the first time on a 2-core CPU, 2 s once inductor's cache holds it); off: run "
        "the model and guide every step. "
        f"auto: on when a C++ compiler works and the run has at least {AUTO_COMPILE_MIN_STEPS} "
        "steps, record otherwise, off for --aggressive, under torchrun and with --dreg (a failed "
        "recording or compilation falls back to the eager step with one line); a bare --compile "
        "is on (default: auto; see docs/performance)",
    )
    add_optim_options(p)
    g.add_argument(
        "--eval-samples",
        type=O.non_negative_int,
        default=1000,
        help="importance samples K for the final log p(x) on the test set; 0 skips it (default: 1000)",
    )
    O.add_device(p)


def add_optim_options(p):
    from pyrogen.optim import INITS, OPTIMIZERS, RECIPES, REDUCTIONS

    g = p.add_argument_group(
        "optimisation (pyrogen.optim; --recipe he2019-image is He et al. 2019's image set-up, he2019 their text set-up)"
    )
    g.add_argument(
        "--recipe",
        choices=RECIPES,
        default="default",
        help="default: Adam 1e-3 on the batch-summed loss, PyTorch init, no clipping or decay; "
        "he2019-image (their image.py): Adam 1e-3 on the per-example mean loss, clip 5, PyTorch "
        "init, lr halved after 20 epochs above the best validation ELBO, at most 5 times; he2019 "
        "(their text.py, never used on images by them): SGD lr 1.0 on the per-example mean loss, "
        "clip 5, U(-0.01, 0.01) init, lr halved after 2 epochs without a better validation ELBO "
        "from epoch 15, at most 5 times. Both need --validation-size and keep the image VAE's "
        "encoder head (linear maps with biases to loc and log-variance, as their image encoder); "
        "the options below override them (default: default)",
    )
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="optimizer (default: adam)")
    g.add_argument(
        "--loss-reduction",
        choices=REDUCTIONS,
        default=None,
        help="differentiate the ELBO summed over the batch (sum) or averaged (mean, a step B times "
        "smaller at the same lr); metrics are nats per example either way (default: sum)",
    )
    g.add_argument(
        "--clip-norm",
        type=O.non_negative_float,
        default=None,
        metavar="C",
        help="clip the global gradient norm of all parameters at C after every backward pass, the "
        "aggressive inner loop's included; 0 is off (default: off)",
    )
    g.add_argument(
        "--init",
        choices=INITS,
        default=None,
        help="uniform: every parameter from U(-0.01, 0.01) (default: default, PyTorch's)",
    )
    g.add_argument(
        "--lr-decay-epochs",
        type=O.non_negative_int,
        default=None,
        metavar="N",
        help="halve the learning rate after N epochs without a better validation ELBO, reloading the "
        "best weights and restarting the optimizer; needs --validation-size; 0 is off (default: 0)",
    )
    g.add_argument(
        "--max-decay",
        type=O.positive_int,
        default=None,
        metavar="M",
        help="stop training after the M-th decay (default: 5)",
    )
    g.add_argument(
        "--decay-start-epoch",
        type=O.non_negative_int,
        default=None,
        metavar="E",
        help="decay only from 0-based epoch E on (default: 15, text.py's; 0 with --recipe he2019-image)",
    )
    g.add_argument(
        "--validation-size",
        type=O.non_negative_int,
        default=0,
        metavar="N",
        help="hold N random training images out as a validation split for the lr decay and the "
        "aggressive switch; both need it, neither reads the test set (default: 0)",
    )


def optim_settings(args):
    """config["train"] keys of the optimisation options: the recipe's values, then the options given."""
    from pyrogen.optim import OptimConfig

    decay = None if args.lr_decay_epochs is None else args.lr_decay_epochs > 0
    try:
        c = OptimConfig.from_recipe(
            args.recipe,
            optimizer=args.optimizer,
            lr=args.lr,
            loss_reduction=args.loss_reduction,
            clip_norm=args.clip_norm,
            init=args.init,
            decay=decay,
            decay_epochs=args.lr_decay_epochs or None,
            max_decay=args.max_decay,
            decay_start_epoch=args.decay_start_epoch,
        )
    except ValueError as e:
        raise PyrogenError(str(e)) from None
    if c.decay and not args.validation_size:
        raise PyrogenError(
            "learning-rate decay on plateau watches a validation split of the training data, "
            "never the test set; give --validation-size N"
        )
    return {
        "recipe": args.recipe,
        "optimizer": c.optimizer,
        "lr": c.lr,
        "momentum": c.momentum,
        "loss_reduction": c.loss_reduction,
        "clip_norm": c.clip_norm,
        "init": c.init,
        "lr_decay_epochs": c.decay_epochs if c.decay else 0,
        "max_decay": c.max_decay,
        "decay_start_epoch": c.decay_start_epoch,
        "decay_reference": c.decay_reference,
        "validation_size": args.validation_size,
    }


def add_collapse_options(p):
    from pyrogen.infer.kl_schedule import KL_SCHEDULES

    g = p.add_argument_group("posterior collapse (KL weight λ, free bits, aggressive training)")
    g.add_argument(
        "--kl-schedule",
        choices=KL_SCHEDULES,
        default="constant",
        help="KL weight λ over training: constant (--kl-weight), linear warm-up from 0.1 to 1 "
        "over --kl-warmup-epochs, or cyclical (Fu et al. 2019, --kl-cycles cycles over "
        "--epochs); evaluation always uses λ = 1 (default: constant)",
    )
    g.add_argument("--kl-weight", type=O.positive_float, default=1.0, help="λ of the constant schedule (default: 1)")
    g.add_argument(
        "--kl-warmup-epochs", type=O.positive_float, default=10.0, help="epochs of the linear warm-up (default: 10)"
    )
    g.add_argument("--kl-cycles", type=O.positive_int, default=4, help="cycles of the cyclical schedule (default: 4)")
    g.add_argument(
        "--free-bits",
        type=O.non_negative_float,
        default=0.0,
        metavar="NATS",
        help="free bits: KL per latent dimension, averaged over the minibatch, floored at NATS "
        "(Kingma et al. 2016; analytic KL); 0 is off (default: 0)",
    )
    g.add_argument(
        "--aggressive",
        action="store_true",
        help="aggressive inference-network training (He et al. 2019) until the mutual "
        "information of the validation split (--validation-size, required) stops improving",
    )
    g.add_argument(
        "--aggressive-patience",
        type=O.positive_int,
        default=5,
        help="epochs in which MI fails to beat its best before aggressive mode ends (default: 5)",
    )


def add_flow_options(p):
    p.add_argument_group("normalizing-flow guide").add_argument(
        "--flow",
        type=O.flow,
        default=None,
        metavar="KIND:K",
        help="a normalizing-flow guide: the encoder's q(z|x) pushed through K amortized transforms, iaf:K "
        "(inverse autoregressive), planar:K or radial:K, e.g. iaf:2; KL(q||p) is then Monte Carlo, "
        "so --elbo meanfield is refused (default: none)",
    )


def add_layer_options(p):
    g = p.add_argument_group("two stochastic layers (Burda et al. 2016: z2 -> z1 -> x, MLP, normal latents)")
    g.add_argument(
        "--layers",
        type=int,
        choices=[1, 2],
        default=1,
        help="stochastic layers: 2 trains pyrogen.models.TwoLayerVAE, with --latent-dim and "
        "--hidden for z1 and the next two options for z2 (default: 1)",
    )
    g.add_argument(
        "--top-latent-dim",
        type=O.positive_int,
        default=None,
        help="with --layers 2: dimension of z2 (default: half of --latent-dim)",
    )
    g.add_argument(
        "--top-hidden",
        type=O.positive_int,
        nargs="+",
        default=None,
        metavar="WIDTH",
        help="with --layers 2: hidden widths between z1 and z2 (default: the dimension of z2, twice)",
    )


def two_layer_model(args):
    """TwoLayerVAE's arguments from ``train vae --layers 2``'s options."""
    if args.architecture != "mlp" or args.prior != "normal" or args.posterior != "normal":
        raise PyrogenError("--layers 2 is an MLP with normal latents; drop --architecture, --prior and --posterior")
    top = args.top_latent_dim or max(1, args.latent_dim // 2)
    return {
        "model": "two-layer",
        "latent_dims": (args.latent_dim, top),
        "likelihood": args.likelihood,
        "hidden": (tuple(args.hidden), tuple(args.top_hidden or (top, top))),
    }


def check_objective_options(args):
    """--dreg and --tc-beta belong to one objective each; given with another they would do nothing."""
    if args.dreg and args.elbo != "iwae":
        raise PyrogenError(f"--dreg applies to --elbo iwae, not --elbo {args.elbo}")
    if args.tc_beta is not None and args.elbo != "tc":
        raise PyrogenError(f"--tc-beta applies to --elbo tc, not --elbo {args.elbo}")
    if getattr(args, "layers", 1) == 1 and (getattr(args, "top_latent_dim", None) or getattr(args, "top_hidden", None)):
        raise PyrogenError("--top-latent-dim and --top-hidden apply to --layers 2")


def _memory_bytes():
    """This machine's physical memory in bytes (8 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def check_mlp_fits(hidden, latent_dim, pixels=O.PIXELS):
    """Refuse, before anything is built, MLP widths whose training state cannot fit in half the memory."""
    widths = [pixels, *hidden]
    encoder = sum((a + 1) * b for a, b in zip(widths, widths[1:])) + (widths[-1] + 1) * 2 * latent_dim
    back = [latent_dim, *reversed(hidden), pixels]
    decoder = sum((a + 1) * b for a, b in zip(back, back[1:]))
    needed, available = (encoder + decoder) * O.BYTES_PER_PARAMETER, _memory_bytes() // 2
    if needed > available:
        raise PyrogenError(
            f"argument --hidden: expected networks whose weights, gradients and Adam state fit in half this "
            f"machine's memory ({available / 2**30:.1f} GiB), got --hidden {' '.join(map(str, hidden))} "
            f"--latent-dim {latent_dim}: {encoder + decoder:,} parameters, {needed / 2**30:.1f} GiB"
        )


def check_step_fits(args):
    """Refuse particles x batch x pixels beyond :data:`~pyrogen.kinds.options.MAX_STEP_ELEMENTS`."""
    if args.num_particles * args.batch_size * O.PIXELS > O.MAX_STEP_ELEMENTS:
        raise PyrogenError(
            f"argument --num-particles: expected at most "
            f"{O.MAX_STEP_ELEMENTS // (args.batch_size * O.PIXELS)} particles for --batch-size "
            f"{args.batch_size} (a step's {args.num_particles} x {args.batch_size} images "
            f"would not fit in memory), got {args.num_particles}"
        )


def auto_likelihood(args, kind="vae"):
    """``--likelihood auto``: the likelihood that fits the run's training data
    (:func:`pyrogen.distributions.choose_likelihood`), with the line saying which and why printed."""
    from pyrogen.config import default_config
    from pyrogen.distributions import resolve_likelihood

    train, _ = lazy("pyrogen.rundirs:read_splits")(O.data_settings(args, default_config(kind=kind))["data"])
    name, message = resolve_likelihood("auto", train.images)
    print(message, flush=True)
    return name


def make_config(args, kind="vae", collapse=True):
    """A new VAE-family run's configuration (kind ``kind``) from ``pyrogen train vae|ae``'s options;
    ``collapse``: the options of :func:`add_collapse_options` exist (``train vae``)."""
    from pyrogen.config import default_config

    if args.likelihood == "auto":
        args.likelihood = auto_likelihood(args, kind)
    check_objective_options(args)
    if args.architecture == "mlp":
        check_mlp_fits(args.hidden, args.latent_dim)
    flow = {"flow": args.flow} if getattr(args, "flow", None) else {}
    if getattr(args, "layers", 1) == 2:
        if flow:
            raise PyrogenError("--flow transforms the one-layer VAE's guide; drop --flow or --layers 2")
        config = default_config(kind=kind, **two_layer_model(args))
    else:
        transform = {"input_transform": args.input_transform} if args.input_transform != "none" else {}
        config = default_config(
            kind=kind,
            latent_dim=args.latent_dim,
            architecture=args.architecture,
            hidden=tuple(args.hidden),
            likelihood=args.likelihood,
            prior=args.prior,
            posterior=args.posterior,
            **flow,
            **transform,
        )
    O.data_settings(args, config)
    config["train"].update(optim_settings(args))
    config["train"].update(
        epochs=O.epochs(args),
        batch_size=args.batch_size,
        elbo=args.elbo,
        num_particles=args.num_particles,
        seed=args.seed,
        compile=args.compile,
        dreg=args.dreg,
    )
    if args.tc_beta is not None:
        config["train"]["tc_beta"] = args.tc_beta
    if collapse:
        if args.aggressive and not args.validation_size:
            raise PyrogenError(
                "--aggressive leaves aggressive mode when the mutual information of a "
                "validation split stops improving, never the test set's; give --validation-size N"
            )
        config["train"].update(
            kl_schedule=args.kl_schedule,
            kl_weight=args.kl_weight,
            kl_warmup_epochs=args.kl_warmup_epochs,
            kl_cycles=args.kl_cycles,
            free_bits=args.free_bits,
            aggressive=args.aggressive,
            aggressive_patience=args.aggressive_patience,
        )
    config["eval"]["num_samples"] = args.eval_samples
    check_step_fits(args)
    return config


def add_vae_command_options(p):
    """``pyrogen train vae``: the shared VAE options, the collapse, two-layer and flow groups, --conditional."""
    add_options(p)
    add_collapse_options(p)
    add_layer_options(p)
    add_flow_options(p)
    p.add_argument(
        "--conditional",
        action="store_true",
        help="conditional VAE: the label is an input of encoder and decoder (an MLP of --hidden widths, "
        "normal prior and posterior, constant KL weight); samples.png has one row per class",
    )


def finish(trainer, echo):
    """After training: the best-validation weights where the lr decayed, the pictures, and the
    end-of-training evaluation (test ELBO, log p(x) with its PSIS diagnostic), printed and written."""
    lazy("pyrogen.runs:final_evaluation")(trainer, echo)


def note_on_extending(settings, epochs):
    """Resuming beyond the run's ``epochs``: a cyclical KL schedule keeps its cycles."""
    if settings.train.kl_schedule == "cyclical":
        return f"the cyclical KL schedule keeps its {epochs}-epoch cycles; after epoch {epochs} the KL weight stays 1"
    return None


KIND = RunKind(
    name="vae",
    command="vae",
    help="variational autoencoder trained by SVI",
    description="Train a VAE by SVI (AEVB), print test ELBO and importance-sampled log p(x), "
    "and write metrics, a checkpoint and PNG grids of samples and reconstructions.",
    default_config=lazy("pyrogen.config:default_config"),
    trainer="pyrogen.training.vae:VAETrainer",
    build=lazy("pyrogen.training.vae:build_trainer"),
    model=lazy("pyrogen.models.registry:build_model"),
    add_options=add_vae_command_options,
    make_config=make_config,
    variant=lambda args: "cvae" if args.conditional else "vae",
    finish=finish,
    fits_codes=True,
    note_on_extending=note_on_extending,
)
