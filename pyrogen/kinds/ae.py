"""Run kind ``"ae"``: the deterministic autoencoder baseline (``pyrogen train ae``).

The VAE's networks with a point-mass guide, trained by the VAE's loop: its objective is
log p(x|z) + log p(z) at z = encoder(x); it has no ELBO and no importance-sampled log p(x).
"""

from pyrogen.errors import PyrogenError
from pyrogen.kinds import vae
from pyrogen.kinds.base import RunKind, lazy


def add_options(p):
    vae.add_options(p)
    p.set_defaults(eval_samples=0)


def make_config(args):
    if args.eval_samples:
        raise PyrogenError(
            "--eval-samples must be 0 for an autoencoder: its guide is a point mass, "
            "which has no importance weights, so log p(x) cannot be estimated"
        )
    return vae.make_config(args, kind="ae", collapse=False)


KIND = RunKind(
    name="ae",
    command="ae",
    help="deterministic autoencoder: the VAE's networks with a point-mass guide",
    description="Train the autoencoder baseline (the VAE's networks, q(z|x) a point mass at the "
    "encoder's output) by the same loop; its objective is log p(x|z) + log p(z) at "
    "z = encoder(x), and it has no ELBO or importance-sampled log p(x).",
    default_config=lambda **settings: lazy("pyrogen.config:default_config")("ae", **settings),
    trainer="pyrogen.training.vae:VAETrainer",
    build=lazy("pyrogen.training.vae:build_trainer"),
    model=lazy("pyrogen.models.registry:build_model"),
    add_options=add_options,
    make_config=make_config,
    finish=vae.finish,
    evaluate="objective",
    fits_codes=True,
    vae_pair=False,
)
