"""Run kind ``"gan"``: a generative adversarial network, a Pyro generator trained by
:class:`~pyrogen.infer.Adversarial` (``pyrogen train gan``; ``--conditional`` for the
class-conditional pair). Its generator is an implicit model: samples, no density."""

from pyrogen.errors import DataError
from pyrogen.kinds import options as O
from pyrogen.kinds.base import RunKind, lazy


def add_options(p):
    """Options of ``pyrogen train gan``."""
    from pyrogen.infer.gan_losses import GAN_LOSSES
    from pyrogen.models.gan import ARCHITECTURES, NORMS

    O.add_run(p, pictures="sample grids")
    g = p.add_argument_group("networks")
    g.add_argument(
        "--architecture", choices=ARCHITECTURES, default="dcgan", help="generator and discriminator (default: dcgan)"
    )
    g.add_argument("--latent-dim", type=O.bounded_int(O.MAX_WIDTH), default=100, help="dimension of z (default: 100)")
    g.add_argument(
        "--hidden",
        type=O.bounded_int(O.MAX_WIDTH),
        nargs="+",
        default=[256, 256],
        metavar="WIDTH",
        help="hidden widths of the MLP players (default: 256 256)",
    )
    g.add_argument(
        "--channels",
        type=O.bounded_int(O.MAX_WIDTH),
        default=64,
        help="feature maps of the DCGAN players (default: 64)",
    )
    g.add_argument(
        "--norm",
        choices=NORMS,
        default=None,
        help="discriminator normalisation: batch, spectral or none (default: none for wgan-gp and "
        "the MLP, batch for DCGAN)",
    )
    g.add_argument(
        "--conditional",
        action="store_true",
        help="class-conditional GAN: a generator G(z, y) against a projection discriminator on an MLP "
        "of --hidden widths, trained on the labelled data; the sample grid has one row per class",
    )
    O.add_data(p, channels_flag="--image-channels")
    g = p.add_argument_group("training (the adversarial game)")
    g.add_argument(
        "--loss", choices=sorted(GAN_LOSSES), default="nonsaturating", help="the game (default: nonsaturating)"
    )
    g.add_argument(
        "--gp-weight", type=O.non_negative_float, default=10.0, help="λ of WGAN-GP's gradient penalty (default: 10)"
    )
    g.add_argument(
        "--d-steps",
        type=O.positive_int,
        default=1,
        help="discriminator updates per generator update, each on a fresh batch (default: 1)",
    )
    O.add_epochs_and_batch(g, 64)
    g.add_argument("--lr-g", type=O.positive_float, default=2e-4, help="generator's Adam learning rate (default: 2e-4)")
    g.add_argument(
        "--lr-d", type=O.positive_float, default=2e-4, help="discriminator's Adam learning rate (default: 2e-4)"
    )
    g.add_argument("--beta1", type=O.unit_interval, default=0.5, help="Adam's beta1 for both players (default: 0.5)")
    g.add_argument(
        "--beta2", type=O.unit_interval, default=0.999, help="Adam's beta2 for both players (default: 0.999)"
    )
    g.add_argument(
        "--ema-decay",
        type=O.unit_interval,
        default=0.0,
        help="moving average of the generator's weights for samples (e.g. 0.999); 0 is off (default: 0)",
    )
    O.add_seed(g)
    O.add_device(p)


def make_config(args):
    """A GAN run's configuration from ``pyrogen train gan``'s options (the conditional pair with --conditional)."""
    from pyrogen.config import conditional_gan_config, default_gan_config

    config = default_gan_config(
        args.architecture, args.latent_dim, tuple(args.hidden), args.channels, args.norm, args.loss
    )
    O.data_settings(args, config)
    config["train"].update(
        epochs=O.epochs(args),
        batch_size=args.batch_size,
        loss=args.loss,
        gp_weight=args.gp_weight,
        d_steps=args.d_steps,
        lr_g=args.lr_g,
        lr_d=args.lr_d,
        betas=[args.beta1, args.beta2],
        ema_decay=args.ema_decay,
        seed=args.seed,
    )
    if not args.conditional:
        return config
    if args.norm == "batch":
        raise DataError("--conditional uses a projection discriminator, which takes --norm spectral or none, not batch")
    return conditional_gan_config(config)


def generator(config):
    """The untrained generator of a GAN configuration (:func:`~pyrogen.models.registry.build_gan_networks`)."""
    from pyrogen.models.registry import build_gan_networks

    return build_gan_networks(config)[0]


def defaults_like(config):
    """``pyrogen train gan``'s defaults; the class-conditional ones for a run whose generator takes labels."""
    from pyrogen.config import conditional_gan_config, default_gan_config
    from pyrogen.settings import written_section

    conditional = "num_classes" in written_section(config, "model")  # a generator that takes labels
    return conditional_gan_config(default_gan_config()) if conditional else default_gan_config()


def finish(trainer, echo):
    echo(f"wrote {trainer.run.file('samples.png')}")


KIND = RunKind(
    name="gan",
    command="gan",
    help="generative adversarial network: a Pyro generator trained by pyrogen.infer.Adversarial",
    description="Train a GAN (generator x = G(z) against a discriminator) and write metrics with "
    "training-health flags, a checkpoint and a PNG grid of samples from fixed noise per epoch.",
    default_config=lazy("pyrogen.config:default_gan_config"),
    trainer="pyrogen.training.gan:GANTrainer",
    build=lazy("pyrogen.training.gan:build_gan_trainer"),
    model=generator,
    defaults_like=defaults_like,
    weights=lambda checkpoint, use_ema: "ema" if use_ema and "ema" in checkpoint else "generator",
    data="grey",
    add_options=add_options,
    make_config=make_config,
    finish=finish,
    has_density=False,
    adversarial=True,
    vae_pair=False,
    evaluate=None,
    evaluate_refusal="a GAN's generator is an implicit model with no density, so it has no ELBO or log p(x); "
    "score its samples with 'pyrogen sample-quality {run}' (Fréchet distance, precision and "
    "recall) instead",
)
