"""pyrogen.settings: typed configurations, and earlier config.json layouts that open and resume bit for bit.

The fixtures below are the configurations that earlier pyrogens wrote, reconstructed from the history
of pyrogen/config.py: each lacks the settings added after it was written (and so takes the values its
runs used, not today's defaults).
"""

import copy
import dataclasses
import json

import pytest
import torch

from pyrogen import runs
from pyrogen.config import (
    default_aae_config,
    default_ali_config,
    default_config,
    default_cvae_config,
    default_gan_config,
)
from pyrogen.errors import DataError
from pyrogen.files import RunDir
from pyrogen.settings import CONFIG_VERSION, RunConfig, migrate
from tests.conftest import requires_fashion_mnist

TINY_DATA = {"train_size": 100, "test_size": 50}
OPTIM_KEYS = (
    "recipe",
    "optimizer",
    "momentum",
    "loss_reduction",
    "clip_norm",
    "init",
    "lr_decay_epochs",
    "max_decay",
    "decay_start_epoch",
    "decay_reference",
    "validation_size",
)


def _without(config, model=(), train=(), data=("source",), discriminator=(), top=("version",)):
    config = json.loads(json.dumps(config))
    for key in top:
        config.pop(key, None)
    for section, keys in (("model", model), ("train", train), ("data", data), ("discriminator", discriminator)):
        for key in keys:
            config.get(section, {}).pop(key, None)
    return config


def _tiny(config, epochs=2, batch_size=50):
    config["data"].update(TINY_DATA)
    config["train"].update(epochs=epochs, batch_size=batch_size)
    if "eval" in config:
        config["eval"]["num_samples"] = 0
    return config


def vae_first_layout():
    """The first layout (pyrogen/config.py at 1fefce7): elbo "trace", compile a boolean, no objective,
    vectorization or optimisation keys; the model without its scale head (σ = exp(a) then)."""
    config = _without(
        default_config(latent_dim=4, hidden=(16,)),
        model=("scale_head",),
        train=("dreg", "tc_beta", "vectorize_particles", *OPTIM_KEYS),
    )
    config["train"].update(elbo="trace", compile=False)
    return _tiny(config)


def vae_compile_auto_layout():
    """After --compile auto (4c9f4a7) and before vectorized particles (a2caa1a)."""
    config = _without(default_config(latent_dim=4, hidden=(16,)), train=("vectorize_particles", *OPTIM_KEYS))
    config["train"].update(num_particles=2, elbo="trace")
    return _tiny(config)


def vae_unversioned_layout():
    """The last layout before ``version`` and ``data.source``."""
    return _tiny(_without(default_config(latent_dim=4, hidden=(16,))))


def gan_first_layout():
    """GAN runs before class coverage (7f06f63): no min_classes_covered."""
    config = _without(default_gan_config("mlp", latent_dim=4, hidden=(16,)), train=("min_classes_covered",))
    return _tiny(config)


def ali_first_layout():
    """ALI runs of 9567041: an MLP joint discriminator without architecture, channels, dropout, slope and
    initialisation keys; no update (alternating then), output-bias or probe keys; Adam at 2e-4."""
    config = default_ali_config(
        latent_dim=4, architecture="mlp", hidden=(16,), likelihood="bernoulli", disc_hidden=(16,)
    )
    config = _without(
        config,
        model=("scale_head",),
        train=("update", "init_output_bias", "probe_size", "min_classes_covered"),
        discriminator=("architecture", "channels", "dropout", "slope", "init_std"),
    )
    config["train"].update(lr_g=2e-4, lr_d=2e-4)
    return _tiny(config)


def aae_first_layout():
    config = _without(
        default_aae_config(latent_dim=4, hidden=(16,), disc_hidden=(16,)),
        model=("scale_head",),
        train=("probe_size", "min_classes_covered"),
    )
    return _tiny(config)


def cvae_unversioned_layout():
    config = _without(default_cvae_config(latent_dim=4, hidden=(16,)))
    return _tiny(config)


LAYOUTS = {
    "vae-first": vae_first_layout,
    "vae-compile-auto": vae_compile_auto_layout,
    "vae-unversioned": vae_unversioned_layout,
    "gan-first": gan_first_layout,
    "ali-first": ali_first_layout,
    "aae-first": aae_first_layout,
    "cvae-unversioned": cvae_unversioned_layout,
}


@pytest.mark.parametrize(
    "make",
    [
        default_config,
        lambda: default_config("ae"),
        default_gan_config,
        default_ali_config,
        default_aae_config,
        default_cvae_config,
    ],
)
def test_todays_configurations_migrate_to_themselves(make):
    config = json.loads(json.dumps(make()))
    settings = migrate(config)
    assert isinstance(settings, RunConfig) and settings.version == CONFIG_VERSION == config["version"]
    assert settings.to_dict() == config


def test_earlier_layouts_take_the_values_their_runs_used():
    first = migrate(vae_first_layout())
    assert first.version == 1 and first.train.compile is False and first.train.vectorize_particles is False
    assert first.model.args["scale_head"] == "log-scale" and first.data.source is None
    assert (first.train.optimizer, first.train.loss_reduction, first.train.tc_beta) == ("adam", "sum", 6.0)
    assert migrate(vae_compile_auto_layout()).train.vectorize_particles is False
    assert migrate({"kind": "vae", "model": {}, "train": {}}).train.compile == "off"  # before the key: eager
    gan = migrate(gan_first_layout())
    assert gan.train.min_classes_covered == 8 and gan.model.args["projection_norm"] == "feature"
    assert "binarize" not in gan.to_dict()["data"]
    ali = migrate(ali_first_layout())
    assert (ali.train.update, ali.train.init_output_bias, ali.train.probe_size) == ("alternating", False, 0)
    d = ali.discriminator.args
    assert (d["architecture"], d["channels"], d["dropout"], d["slope"], d["init_std"]) == ("mlp", 32, 0.0, 0.2, None)
    assert migrate(aae_first_layout()).train.probe_size == 0
    assert ali.train.min_classes_covered == migrate(aae_first_layout()).train.min_classes_covered == 8


def test_settings_are_frozen_and_complete():
    settings = migrate(default_gan_config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.train.epochs = 3
    assert settings.train.betas == (0.5, 0.999)
    with pytest.raises(TypeError):
        settings.model.args["latent_dim"] = 3
    config = default_config()
    before = copy.deepcopy(config)
    migrate(config)
    assert config == before  # migrate reads, never changes


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(version=CONFIG_VERSION + 1), "written by a newer pyrogen"),
        (lambda c: c.update(kind="diffusion"), "kind must be one of"),
        (lambda c: c.update(train=[1]), "the configuration's 'train' must be a JSON object"),
        (lambda c: c["train"].update(epochs=0), "train.epochs must be an integer >= 1, got 0"),
        (lambda c: c["train"].update(tc_beta=float("nan")), "train.tc_beta must be a finite number, got nan"),
        (lambda c: c["train"].update(compile="sometimes"), "train.compile must be one of"),
        (lambda c: c["data"].update(binarize="half"), "data.binarize must be 'dynamic', 'static' or 'none'"),
        (lambda c: c["eval"].update(num_samples=-1), "eval.num_samples must be an integer >= 0, got -1"),
    ],
)
def test_a_configuration_out_of_range_is_refused_naming_the_setting(change, message):
    config = default_config()
    change(config)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        migrate(config)


def _weights(path):
    state = RunDir(path).load_checkpoint()
    return {k: v for k, v in state.items() if k in ("model", "generator", "discriminator", "optim", "optim_g")}


def _equal(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@requires_fashion_mnist
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_run_of_an_earlier_layout_opens_and_resumes_bit_for_bit(layout, tmp_path, one_thread):
    config = LAYOUTS[layout]()
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    runs.train(config, straight, device="cpu", progress=False, echo=lambda line: None)
    trainer = runs.start_run(stopped, config, lambda: runs.build_trainer(config, device="cpu", progress=False))
    trainer.fit(1)  # stopped after its first epoch, as a Ctrl-C in the second would leave it
    assert json.load(open(RunDir(stopped).file("config.json"))) == config  # written in its own layout
    lines = []
    runs.resume(stopped, device="cpu", progress=False, echo=lines.append)
    assert "resumed at epoch 1 of 2" in lines
    assert RunDir(stopped).load_checkpoint()["epoch"] == 2
    assert _equal(_weights(stopped), _weights(straight))
    assert json.load(open(RunDir(stopped).file("config.json"))) == config  # nothing rewritten in a new layout
    runs.open_run(stopped, device="cpu").model()  # and it opens
