"""Run kind ``"ali"``: ALI / BiGAN, the VAE pair as generator and encoder trained against a joint
discriminator D(x, z) (:class:`~pyrogen.infer.AdversarialInference`; ``pyrogen train ali``).

Also the options that ``pyrogen train aae`` shares (:func:`add_pair_options`).
"""

from pyrogen.errors import DataError
from pyrogen.kinds import options as O
from pyrogen.kinds.base import RunKind, lazy


def add_pair_options(p, ali):
    """Options of ``pyrogen train ali`` (``ali``) and ``pyrogen train aae``."""
    from pyrogen.distributions import FAMILIES, LIKELIHOODS
    from pyrogen.infer.gan_losses import GAN_LOSSES
    from pyrogen.networks import ARCHITECTURES

    O.add_run(p)
    g = p.add_argument_group("the VAE pair")
    g.add_argument(
        "--latent-dim",
        type=O.bounded_int(O.MAX_WIDTH),
        default=64 if ali else 8,
        help=f"dimension of z (default: {64 if ali else 8})",
    )
    architecture, hidden = ("dcgan", 256) if ali else ("mlp", 400)
    g.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default=architecture,
        help=f"encoder/decoder; dcgan: convolutions with batch norm, ALI's (default: {architecture})",
    )
    g.add_argument(
        "--hidden",
        type=O.bounded_int(O.MAX_WIDTH),
        nargs="+",
        default=[hidden],
        metavar="WIDTH",
        help=f"hidden widths of the encoder, mirrored by the decoder; for conv and dcgan, the width of "
        f"the linear layer after the convolutions (default: {hidden})",
    )
    default_likelihood = "bernoulli-relaxed" if ali else "bernoulli"  # ALI: the sigmoid mean (default_ali_config)
    g.add_argument(
        "--likelihood",
        choices=sorted(LIKELIHOODS),
        default=default_likelihood,
        help=f"p(x|z) (default: {default_likelihood})",
    )
    g.add_argument("--prior", choices=sorted(FAMILIES), default="normal", help="latent family of p(z)")
    g.add_argument("--posterior", choices=sorted(FAMILIES), default="normal", help="latent family of q(z|x)")
    if ali:
        g.add_argument(
            "--disc-hidden",
            type=O.bounded_int(O.MAX_WIDTH),
            nargs="+",
            default=None,
            metavar="WIDTH",
            help="hidden widths of each of the discriminator's MLPs, on x (after its convolutions), on "
            "z and joint (default: ALI's 256 on x, 256 256 on z and 512 512 joint with the dcgan "
            "pair; else 256 256)",
        )
        g.add_argument(
            "--disc-architecture",
            choices=["dcgan", "mlp"],
            default=None,
            help="the discriminator's branch on x: dcgan (two convolutions) or mlp (default: dcgan for "
            "the dcgan and conv pairs, else mlp)",
        )
        g.add_argument(
            "--disc-dropout",
            type=O.finite_float,
            default=0.2,
            help="dropout before every layer of the discriminator, as ALI's; 0 is none (default: 0.2)",
        )
        g.add_argument(
            "--update",
            choices=["simultaneous", "alternating"],
            default="simultaneous",
            help="ALI's simultaneous update (both players' gradients from one scoring of the pairs) or "
            "DCGAN's alternating one (the players against the updated discriminator) "
            "(default: simultaneous)",
        )
        g.add_argument(
            "--model-x",
            choices=["sample", "mean"],
            default="mean",
            help="the model's x in its pairs: the decoder mean E[x|z] (BiGAN's generator; any "
            "likelihood) or a reparameterized draw of p(x|z) (not the Bernoulli) (default: mean)",
        )
    else:
        g.add_argument(
            "--disc-hidden",
            type=O.bounded_int(O.MAX_WIDTH),
            nargs="+",
            default=[256, 256],
            metavar="WIDTH",
            help="hidden widths of the discriminator's MLP (default: 256 256)",
        )
    O.add_data(p, binarize="binarization of the grey levels (default: the likelihood's, as for train vae)")
    g = p.add_argument_group("training")
    g.add_argument(
        "--loss", choices=sorted(GAN_LOSSES), default="nonsaturating", help="the game (default: nonsaturating)"
    )
    g.add_argument(
        "--gp-weight", type=O.non_negative_float, default=10.0, help="λ of WGAN-GP's gradient penalty (default: 10)"
    )
    g.add_argument(
        "--d-steps", type=O.positive_int, default=1, help="discriminator updates per generator update (default: 1)"
    )
    O.add_epochs_and_batch(g, 100)
    if ali:
        g.add_argument(
            "--lr-g",
            type=O.positive_float,
            default=1e-4,
            help="Adam learning rate of generator and encoder (default: 1e-4, ALI's)",
        )
    else:
        g.add_argument(
            "--lr", type=O.positive_float, default=1e-3, help="autoencoder's Adam learning rate (default: 1e-3)"
        )
        g.add_argument(
            "--adversarial-weight",
            type=O.finite_float,
            default=1.0,
            help="weight of the code discriminator's generator loss; 0 is a plain autoencoder (default: 1)",
        )
    lr_d = "1e-4" if ali else "2e-4"
    g.add_argument(
        "--lr-d",
        type=O.positive_float,
        default=float(lr_d),
        help=f"discriminator's Adam learning rate (default: {lr_d})",
    )
    g.add_argument(
        "--probe-size",
        type=O.non_negative_int,
        default=2000,
        help="training and test images of the linear probe of the codes after every epoch; 0 is off (default: 2000)",
    )
    O.add_seed(g)
    O.add_device(p)


def pair_model(args):
    """The VAE pair's and the discriminator's settings shared by ``train ali`` and ``train aae``."""
    return dict(
        latent_dim=args.latent_dim,
        architecture=args.architecture,
        hidden=tuple(args.hidden),
        likelihood=args.likelihood,
        prior=args.prior,
        posterior=args.posterior,
        loss=args.loss,
        disc_hidden=None if args.disc_hidden is None else tuple(args.disc_hidden),
    )


def pair_settings(args, config):
    """``config`` updated from the data and training options ``train ali`` and ``train aae`` share."""
    O.data_settings(args, config)
    config["train"].update(
        epochs=O.epochs(args),
        batch_size=args.batch_size,
        gp_weight=args.gp_weight,
        d_steps=args.d_steps,
        lr_d=args.lr_d,
        probe_size=args.probe_size,
        seed=args.seed,
    )
    return config


def make_config(args):
    from pyrogen.config import default_ali_config

    if not 0 <= args.disc_dropout < 1:
        raise DataError(f"--disc-dropout must be a probability in [0, 1), got {args.disc_dropout}")
    config = default_ali_config(
        model_x=args.model_x,
        disc_architecture=args.disc_architecture,
        disc_dropout=args.disc_dropout,
        update=args.update,
        **pair_model(args),
    )
    config["train"].update(lr_g=args.lr_g)
    return pair_settings(args, config)


def finish(trainer, echo):
    for name in ("samples.png", "reconstructions.png"):
        echo(f"wrote {trainer.run.file(name)}")


KIND = RunKind(
    name="ali",
    command="ali",
    help="ALI / BiGAN: the VAE pair trained against a joint discriminator D(x, z)",
    description="Train a VAE pair as generator and encoder against a discriminator on (x, z) "
    "(pyrogen.infer.AdversarialInference) and write metrics with health flags, test "
    "reconstruction error and the linear-probe accuracy of the codes, a checkpoint and "
    "sample and reconstruction grids per epoch.",
    default_config=lazy("pyrogen.config:default_ali_config"),
    trainer="pyrogen.training.ali:ALITrainer",
    build=lazy("pyrogen.training.ali:build_ali_trainer"),
    model=lazy("pyrogen.models.registry:build_model"),
    add_options=lambda p: add_pair_options(p, ali=True),
    make_config=make_config,
    finish=finish,
    adversarial=True,
)
