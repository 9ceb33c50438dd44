"""The adversarial autoencoder (Makhzani et al. 2016) on :class:`~pyrogen.training.loop.FitLoop`.

``pyrogen train aae`` trains the VAE pair of a run configuration by
:class:`~pyrogen.infer.AdversarialAutoencoder`: reconstruction
:math:`-\\log p(x \\mid z)` plus ``adversarial_weight`` times the generator loss of a
:class:`~pyrogen.models.gan.LatentDiscriminator` that tells prior draws from codes.
Run directory, metrics, checkpoints, exact resume, divergence stop, health flags,
pictures, ``recon_error`` and ``probe_accuracy`` are those of
:mod:`pyrogen.training.ali`; since the pair is still a VAE (its guide has a density),
every epoch also reports the test ELBO (``test_elbo``, nats per example, the
KL term at weight 1), and ``pyrogen evaluate`` estimates log p(x).
"""

from pyrogen.infer.aae import AdversarialAutoencoder
from pyrogen.rundirs import resume_trainer
from pyrogen.training.ali import AdversarialPairTrainer, build_pair_trainer


class AAETrainer(AdversarialPairTrainer):
    """An adversarial autoencoder (see the module docs); arguments as :class:`~pyrogen.training.ali.ALITrainer`'s,
    ``config`` from :func:`pyrogen.config.default_aae_config`."""

    postfix_formats = tuple((k, ".3f") for k in ("loss_recon", "loss_d", "loss_g"))

    def make_estimator(self, train_data, test_data):
        vae, cfg = self.vae, self.settings.train
        vae.likelihood.check(test_data, "test data")
        optim = self.make_optimizer(vae.parameters(), cfg.lr)
        self.start_game(AdversarialAutoencoder, optim, adversarial_weight=cfg.adversarial_weight)

    def extra_metrics(self):
        return {"test_elbo": self.evaluate()["elbo"]}


def build_aae_trainer(config, run=None, device="auto", progress=True, data=None):
    """An :class:`AAETrainer` for a configuration, freshly seeded (``data`` as in
    :func:`~pyrogen.training.ali.build_ali_trainer`)."""
    return build_pair_trainer(AAETrainer, config, run, device, progress, data)


def resume_aae_trainer(run_dir, device="auto", progress=True, data=None):
    """Rebuild an adversarial-autoencoder run's trainer from its directory and load its last checkpoint."""
    return resume_trainer(run_dir, device, progress, build=build_aae_trainer, data=data)
