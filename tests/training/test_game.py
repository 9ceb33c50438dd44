"""The game trainer (pyrogen.training.game) and what the fit loop gives every trainer (pyrogen.training.loop)."""

import pytest
import torch

from pyrogen.config import default_aae_config, default_ali_config, default_gan_config
from pyrogen.errors import TrainingDivergedError
from pyrogen.optim import PlateauDecay
from pyrogen.runs import RunDir
from pyrogen.training.aae import build_aae_trainer
from pyrogen.training.ali import build_ali_trainer
from pyrogen.training.game import FLAG_TEXT, GameTrainer
from pyrogen.training.gan import build_gan_trainer, resume_gan_trainer
from pyrogen.training.loop import FitLoop


def _images(n, seed):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def _trainer(kind, **options):
    if kind == "gan":
        config = default_gan_config("mlp", latent_dim=8, hidden=(16,))
        data = (_images(40, 0), _images(10, 1))
        build = build_gan_trainer
    else:
        config = (
            default_ali_config(hidden=(16,), architecture="mlp")
            if kind == "ali"
            else default_aae_config(latent_dim=4, hidden=(16,))
        )
        data = (_images(40, 0).round(), None, _images(10, 1).round(), None)
        build = build_ali_trainer if kind == "ali" else build_aae_trainer
    config["train"].update(batch_size=10, log_every=2, num_fixed=8)
    return build(config, device="cpu", progress=False, data=data, **options)


@pytest.mark.parametrize("kind", ["gan", "ali", "aae"])
def test_a_parameter_that_diverges_is_named(kind, one_thread):
    """A NaN that no statistic shows (put into D after the epoch's last step) stops the run at the
    epoch's end, naming the parameter."""
    trainer = _trainer(kind)
    assert isinstance(trainer, GameTrainer)
    name, param = next(iter(trainer.discriminator.named_parameters()))
    step = trainer.train_step

    def poisoned(batch):
        out = step(batch)
        if trainer.batch_in_epoch == trainer.steps_per_epoch() - 1:
            with torch.no_grad():
                param.fill_(float("nan"))
        return out

    trainer.train_step = poisoned
    subject = {"gan": "GAN", "ali": "ALI", "aae": "AAE"}[kind]
    with pytest.raises(
        TrainingDivergedError,
        match=rf"^{subject} training diverged at the end of epoch 1: parameter "
        rf"'discriminator\.{name}' is NaN or infinite; stopping\. No "
        r"checkpoint had been written yet\. Try lower learning rates",
    ):
        trainer.fit(1)


def test_every_flag_has_its_warning():
    trainer = _trainer("gan")
    row = {"diversity": 0.01, "d_accuracy": 1.0, "classes_covered": 3}
    assert trainer.health_flags(row) == ["class-collapse", "mode-collapse", "d-overpowering"]
    assert set(FLAG_TEXT) == {"class-collapse", "mode-collapse", "d-overpowering"}


def test_the_loop_builds_each_trainers_optimizer():
    params = [torch.nn.Parameter(torch.zeros(3))]
    adam = FitLoop.make_optimizer(params, 2e-4, betas=[0.5, 0.999])
    assert type(adam) is torch.optim.Adam and adam.defaults["lr"] == 2e-4 and adam.defaults["betas"] == (0.5, 0.999)
    assert FitLoop.make_optimizer(params, 1e-3).defaults["betas"] == (0.9, 0.999)  # PyTorch's default
    sgd = FitLoop.make_optimizer(params, 1.0, optimizer="sgd", momentum=0.5)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.5
    with pytest.raises(ValueError, match=r"^optimizer must be one of \['adam', 'sgd'\], got 'rmsprop'$"):
        FitLoop.make_optimizer(params, 1.0, optimizer="rmsprop")
    gan = _trainer("gan")
    assert gan.optim_g.defaults["betas"] == (0.5, 0.999) and gan.optim_g.defaults["lr"] == 2e-4


def test_the_loop_clips_gradients_before_every_step():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = FitLoop.make_optimizer([p], 1.0, optimizer="sgd")
    FitLoop.clip_gradients(opt, [p], 0.5)
    p.grad = torch.full((4,), 3.0)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((4,), -0.25))  # the gradient's norm 6 clipped to 0.5
    assert FitLoop.clip_gradients(opt, [p], None) == []


def test_the_loops_decay_is_checkpointed_and_ends_the_run(tmp_path, one_thread):
    """A trainer that sets ``decay`` gets it saved, restored on resume, and fit() stops once it finished."""
    trainer = _trainer("gan")
    config = trainer.config
    run = RunDir.create(tmp_path / "run", config)
    trainer = build_gan_trainer(config, run=run, device="cpu", progress=False, data=(_images(40, 0), _images(10, 1)))
    trainer.decay = PlateauDecay(trainer.generator, trainer.optim_g, patience=1, max_decay=1, start_epoch=0)
    trainer.decay.step(0, 1.0)
    trainer.decay.step(1, 2.0)  # worse: one decay, the last
    assert trainer.decay.finished and trainer.fit(3) == []  # stops before its first epoch
    trainer.decay = PlateauDecay(trainer.generator, trainer.optim_g, patience=5, start_epoch=0)
    trainer.decay.step(0, 1.0)
    trainer.fit(1)
    assert run.load_checkpoint()["decay"]["best_loss"] == 1.0
    resumed = resume_gan_trainer(tmp_path / "run", device="cpu", progress=False, data=(_images(40, 0), _images(10, 1)))
    resumed.decay = PlateauDecay(resumed.generator, resumed.optim_g)
    resumed.load_state_dict(run.load_checkpoint())
    assert resumed.decay.best_loss == 1.0 and resumed.epoch == 1


@pytest.mark.parametrize("kind", ["gan", "ali"])
def test_fixed_noise_comes_from_its_own_stream(kind):
    """The fixed noise is the draw of a generator seeded with the run's seed + 3, and drawing from that
    stream leaves the run's own stream where it was."""
    trainer = _trainer(kind)
    seeded = torch.Generator().manual_seed(trainer.config["train"]["seed"] + 3)
    expected = torch.randn(trainer.fixed_noise.shape, generator=seeded)
    if kind == "ali":  # the prior's draw: a standard normal here
        assert trainer.vae.prior_family.name == "normal"
    assert torch.equal(trainer.fixed_noise, expected)
    state = torch.get_rng_state()
    with trainer.fixed_stream("cpu"):
        torch.randn(3)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("kind", ["gan", "ali", "aae"])
def test_a_trainer_reads_complete_frozen_settings_and_checkpoints_its_configuration_as_given(kind, one_thread):
    """The trainer reads migrate's settings (complete: a configuration without min_classes_covered, as ALI and
    AAE runs made before the key, takes 8) and never changes them; the checkpoint embeds the dict it was given."""
    import dataclasses

    from pyrogen.settings import RunConfig, migrate

    trainer = _trainer(kind)
    config = trainer.config
    assert isinstance(trainer.settings, RunConfig) and trainer.settings == migrate(config)
    assert trainer.settings.train.min_classes_covered == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        trainer.settings.train.epochs = 3
    assert trainer.state_dict()["config"] is config
    flags = trainer.health_flags({"classes_covered": 7, "diversity": 1.0, "d_accuracy": 0.5})
    assert flags == ["class-collapse"]


def test_a_trainer_takes_a_run_config_and_checkpoints_its_dict(one_thread):
    from pyrogen.settings import migrate

    config = default_gan_config("mlp", latent_dim=8, hidden=(16,))
    config["train"].update(batch_size=10, log_every=2, num_fixed=8)
    data = (_images(40, 0), _images(10, 1))
    trainer = build_gan_trainer(migrate(config), device="cpu", progress=False, data=data)
    assert trainer.settings == migrate(config) and trainer.state_dict()["config"] == config


def test_a_loop_alone_reads_its_train_section_once():
    """A fit loop of a user's own estimator reads epochs, log_every, seed and precision (0 and "32" where
    absent) when it is built; changing the dict afterwards changes nothing it trains."""
    config = {"train": {"epochs": 2, "log_every": 5}}
    loop = FitLoop(None, config, progress=False)
    train = loop.settings.train
    assert (train.epochs, train.log_every, train.seed, train.precision) == (2, 5, 0, "32")
    config["train"]["epochs"] = 7
    assert loop.settings.train.epochs == 2 and loop.config is config
