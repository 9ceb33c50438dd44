"""The objectives of ``pyrogen train vae``: --elbo auto, iwae and tc, and the two-layer model, wired end to end."""

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrogen.cli import build_parser, main
from pyrogen.config import default_config
from pyrogen.errors import DataError
from pyrogen.infer import IWAE_ELBO, TCELBO, ReparamTrace_ELBO, ReparamTraceMeanField_ELBO
from pyrogen.models import TwoLayerVAE
from pyrogen.models.registry import build_model
from pyrogen.runs import open_run
from pyrogen.training import VAETrainer
from pyrogen.training.vae import ELBOS, resolve_elbo
from tests.conftest import requires_fashion_mnist

TINY = [
    "--train-size",
    "100",
    "--test-size",
    "20",
    "--epochs",
    "1",
    "--latent-dim",
    "4",
    "--hidden",
    "16",
    "--no-progress",
    "--eval-samples",
    "0",
]


def _trainer(progress=False, **train):
    config = default_config(**train.pop("model", {"latent_dim": 2, "hidden": (8,), "image_shape": (1, 4, 4)}))
    config["train"].update(batch_size=10, **train)
    x = torch.bernoulli(torch.full((20, 1, 4, 4), 0.3))
    pyro.set_rng_seed(0)
    return VAETrainer(build_model(config), x, x, config, progress=progress)


@pytest.mark.parametrize(
    "family, expected, estimator",
    [("normal", "meanfield", ReparamTraceMeanField_ELBO), ("student-t", "trace", ReparamTrace_ELBO)],
)
def test_auto_picks_the_analytic_kl_only_where_the_pair_has_a_closed_form(family, expected, estimator, capsys):
    trainer = _trainer(
        progress=True,
        model={"latent_dim": 2, "hidden": (8,), "image_shape": (1, 4, 4), "prior": family, "posterior": family},
    )
    assert trainer.config["train"]["elbo"] == "auto"  # config.json keeps the choice, not its outcome
    assert trainer.elbo_name == expected and type(trainer.elbo) is estimator
    trainer.fit(0)
    line = capsys.readouterr().out.strip()
    assert line.startswith("KL(q||p) is ") and "picked by --elbo auto because" in line and family in line
    assert line.count("\n") == 0


def test_auto_is_monte_carlo_for_the_two_layer_guide_and_meanfield_is_refused_there():
    vae = TwoLayerVAE(latent_dims=(4, 2), image_shape=(1, 4, 4), hidden=((8,), (4,)))
    assert resolve_elbo(vae)[0] == "trace" and "z2 given z1" in resolve_elbo(vae)[1]
    with pytest.raises(Exception, match="--elbo meanfield needs a mean-field guide"):
        _trainer(
            model={"model": "two-layer", "latent_dims": (4, 2), "image_shape": (1, 4, 4), "hidden": ((8,), (4,))},
            elbo="meanfield",
        )


def test_an_old_config_that_names_trace_builds_as_before():
    trainer = _trainer(elbo="trace", num_particles=3)
    for key in ("dreg", "tc_beta", "vectorize_particles"):  # keys an old run's config.json lacks
        trainer.config["train"].pop(key)
    old = VAETrainer(trainer.vae, trainer.test_data, trainer.test_data, trainer.config, progress=False)
    assert type(old.elbo) is ReparamTrace_ELBO and not old.elbo.vectorize_particles
    assert old.elbo_reason is None


def test_trace_particles_are_vectorized_in_new_runs():
    trainer = _trainer(elbo="trace", num_particles=3)
    assert trainer.elbo.vectorize_particles and trainer.elbo.num_particles == 3
    trainer.fit(1)
    assert torch.isfinite(torch.tensor(trainer.metrics[0]["train_elbo"]))


def test_iwae_trains_with_k_particles_and_dreg():
    trainer = _trainer(elbo="iwae", num_particles=4, dreg=True)
    assert isinstance(trainer.elbo, IWAE_ELBO) and trainer.elbo.num_particles == 4 and trainer.elbo.dreg
    trainer.fit(1)
    assert torch.isfinite(torch.tensor(trainer.metrics[0]["train_elbo"]))


def test_tc_uses_the_training_set_size_and_logs_its_decomposition():
    trainer = _trainer(elbo="tc", tc_beta=4.0)
    assert isinstance(trainer.elbo, TCELBO) and trainer.elbo.beta == 4.0 and trainer.elbo.dataset_size == 20
    row = trainer.fit(1)[0]
    terms = [row[k] for k in ("index_code_mi", "total_correlation", "dimwise_kl")]
    assert all(torch.isfinite(torch.tensor(terms)))
    # each term is MWS's estimate, biased up by at least log M for MI (section 3 of tc_elbo's docstring)
    assert row["index_code_mi"] > 0


@pytest.mark.parametrize(
    "train, message",
    [
        (
            {
                "elbo": "tc",
                "model": {
                    "model": "two-layer",
                    "latent_dims": (4, 2),
                    "image_shape": (1, 4, 4),
                    "hidden": ((8,), (4,)),
                },
            },
            "--elbo tc decomposes the KL of the one latent site",
        ),
        (
            {"elbo": "tc", "model": {"latent_dim": 2, "hidden": (8,), "image_shape": (1, 4, 4), "flow": "planar:2"}},
            "--elbo tc needs a guide with independent coordinates",
        ),
        ({"elbo": "iwae", "free_bits": 0.5}, "free bits replace the objective"),
    ],
)
def test_objectives_that_do_not_fit_the_model_are_refused_before_training(train, message):
    with pytest.raises(DataError, match=message):
        _trainer(**train)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dreg"], "--dreg applies to --elbo iwae, not --elbo auto"),
        (["--tc-beta", "2"], "--tc-beta applies to --elbo tc"),
        (["--top-latent-dim", "3"], "--top-latent-dim and --top-hidden apply to --layers 2"),
        (["--layers", "2", "--flow", "iaf:2"], "--flow transforms the one-layer VAE's guide"),
    ],
)
def test_options_given_to_the_wrong_objective_are_one_line_errors(args, message, tmp_path, capsys):
    # refused while the configuration is made, before any data is read
    assert main(["train", "vae", "--out", str(tmp_path / "r"), "--data-dir", str(tmp_path)] + TINY + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrogen: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


@requires_fashion_mnist
def test_a_two_layer_run_reopens_and_evaluates(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["train", "vae", "--out", str(out), "--layers", "2", "--elbo", "iwae", "--num-particles", "3"] + TINY) == 0
    )
    model = open_run(out).model()
    assert isinstance(model, TwoLayerVAE) and model.latent_dims == (4, 2)
    assert main(["evaluate", str(out), "--num-samples", "5", "--no-progress"]) == 0
    assert "log p(x)" in capsys.readouterr().out


@requires_fashion_mnist
def test_a_flow_trains_from_the_cli_samples_by_gmm_and_refuses_meanfield_in_one_line(tmp_path, capsys):
    assert main(["train", "vae", "--out", str(tmp_path / "iaf"), "--flow", "iaf:2"] + TINY) == 0
    model = open_run(tmp_path / "iaf").model()
    assert model.flow is not None and model.config["flow"] == "iaf:2"
    assert main(["sample", str(tmp_path / "iaf"), "--sampler", "gmm:2", "-n", "8"]) == 0  # codes: draws of q
    assert (tmp_path / "iaf" / "samples-gmm2-epoch1-n8-seed0.png").stat().st_size > 0
    capsys.readouterr()
    assert (
        main(["train", "vae", "--out", str(tmp_path / "mf"), "--flow", "planar:3", "--elbo", "meanfield"] + TINY) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("pyrogen: error: the guide 'normal+planar:3' has no closed-form KL") and err.count("\n") == 1
    assert not (tmp_path / "mf").exists()


def test_the_vamp_prior_parses_and_trains_with_iwae():
    args = build_parser().parse_args(["train", "vae", "--out", "x", "--prior", "vamp:5", "--posterior", "erlang:3"])
    assert (args.prior, args.posterior) == ("vamp:5", "erlang:3")
    trainer = _trainer(
        elbo="iwae",
        num_particles=2,
        model={"latent_dim": 2, "hidden": (8,), "image_shape": (1, 4, 4), "prior": "vamp:3"},
    )
    assert trainer.vae.vamp is not None and trainer.elbo_name == "iwae"
    assert torch.isfinite(torch.tensor(trainer.fit(1)[0]["train_elbo"]))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--flow", "maf:2"], "argument --flow: flow must be 'kind:K'"),
        (["--prior", "vamp:0"], "argument --prior: unknown latent family 'vamp:0'"),
        (["--posterior", "vamp:3"], "argument --posterior: unknown latent family 'vamp:3'"),
    ],
)
def test_bad_flow_and_prior_names_are_rejected_by_the_parser(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "vae", "--out", "x"] + args)
    assert e.value.code == 2 and message in capsys.readouterr().err


@requires_fashion_mnist
def test_gmm_sampler_writes_its_own_png_for_an_autoencoder_run(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "ae"
    assert main(["train", "ae", "--out", str(out)] + TINY) == 0
    before = (out / "samples.png").read_bytes()
    assert main(["sample", str(out), "--sampler", "gmm:3", "-n", "16"]) == 0
    assert Image.open(out / "samples-gmm3-epoch1-n16-seed0.png").size[0] > 8 * 30
    assert (out / "samples.png").read_bytes() == before  # the prior's samples are not overwritten
    with pytest.raises(SystemExit):
        main(["sample", str(tmp_path / "ae"), "--sampler", "gmm:0"])


def test_auto_keeps_the_closed_form_kl_under_compile():
    # ReparamTraceMeanField_ELBO is one tensor with no .item() inside, so CompiledLoss records it
    vae = build_model(default_config(latent_dim=2, hidden=(8,), image_shape=(1, 4, 4)))
    assert resolve_elbo(vae, "auto")[0] == "meanfield"
    assert ELBOS["meanfield"] is ReparamTraceMeanField_ELBO
    assert issubclass(ReparamTraceMeanField_ELBO, TraceMeanField_ELBO)  # it is a closed-form-KL estimator
