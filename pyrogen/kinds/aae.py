"""Run kind ``"aae"``: the adversarial autoencoder, reconstruction plus a discriminator on codes
(:class:`~pyrogen.infer.AdversarialAutoencoder`; ``pyrogen train aae``)."""

from pyrogen.errors import DataError
from pyrogen.kinds import ali
from pyrogen.kinds.base import RunKind, lazy


def make_config(args):
    from pyrogen.config import default_aae_config

    if not args.adversarial_weight >= 0:
        raise DataError(f"--adversarial-weight must be >= 0, got {args.adversarial_weight}")
    config = default_aae_config(adversarial_weight=args.adversarial_weight, **ali.pair_model(args))
    config["train"].update(lr=args.lr)
    return ali.pair_settings(args, config)


KIND = RunKind(
    name="aae",
    command="aae",
    help="adversarial autoencoder: reconstruction plus a discriminator on codes",
    description="Train a VAE pair as an adversarial autoencoder (pyrogen.infer.AdversarialAutoencoder) "
    "and write metrics (test ELBO, reconstruction error, linear-probe accuracy, health flags), "
    "a checkpoint and sample and reconstruction grids per epoch.",
    default_config=lazy("pyrogen.config:default_aae_config"),
    trainer="pyrogen.training.aae:AAETrainer",
    build=lazy("pyrogen.training.aae:build_aae_trainer"),
    model=lazy("pyrogen.models.registry:build_model"),
    add_options=lambda p: ali.add_pair_options(p, ali=False),
    make_config=make_config,
    finish=ali.finish,
    adversarial=True,
)
