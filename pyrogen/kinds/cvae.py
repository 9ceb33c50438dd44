"""Run kind ``"cvae"``: a conditional VAE (``pyrogen train vae --conditional``).

The label is an input of encoder and decoder (:class:`~pyrogen.models.ConditionalVAE`):
an MLP, normal prior and posterior, constant KL weight, trained on the labelled data.
"""

from pyrogen.errors import PyrogenError
from pyrogen.kinds import options as O
from pyrogen.kinds.base import RunKind, lazy


def make_config(args):
    """A conditional VAE run's configuration from ``pyrogen train vae --conditional``'s options."""
    from pyrogen.config import default_cvae_config

    unsupported = [
        flag
        for flag, used in (
            ("--architecture conv", args.architecture != "mlp"),
            ("--prior", args.prior != "normal"),
            ("--posterior", args.posterior != "normal"),
            ("--kl-schedule", args.kl_schedule != "constant"),
            ("--kl-weight", args.kl_weight != 1.0),
            ("--free-bits", args.free_bits > 0),
            ("--aggressive", args.aggressive),
            (f"--compile {args.compile}", args.compile in ("on", "record")),
        )
        if used
    ]
    if unsupported:
        raise PyrogenError(
            f"--conditional trains the conditional VAE (MLP, normal prior and posterior, "
            f"KL weight 1), which does not take {', '.join(unsupported)}"
        )
    config = default_cvae_config(latent_dim=args.latent_dim, hidden=tuple(args.hidden), likelihood=args.likelihood)
    O.data_settings(args, config)
    config["train"].update(
        epochs=O.epochs(args),
        batch_size=args.batch_size,
        lr=args.lr,
        elbo=args.elbo,
        num_particles=args.num_particles,
        seed=args.seed,
    )
    return config


def finish(trainer, echo):
    """After training: the pictures (one row per class) and the test ELBO given the test labels."""
    for path in trainer.write_pictures():
        echo(f"wrote {path}")
    echo(f"test ELBO {trainer.evaluate()['elbo']:.2f} nats (given the test labels)")


KIND = RunKind(
    name="cvae",
    command="vae",
    usage="vae --conditional",
    default_config=lazy("pyrogen.config:default_cvae_config"),
    trainer="pyrogen.training.cvae:CVAETrainer",
    build=lazy("pyrogen.training.cvae:build_cvae_trainer"),
    model=lazy("pyrogen.models.registry:build_model"),
    make_config=make_config,
    finish=finish,
    conditional=True,
    vae_pair=False,
    evaluate=None,
    evaluate_refusal="pyrogen evaluate does not take conditional VAE runs yet; their test ELBO given the "
    "labels is in metrics.csv (test_elbo)",
)
