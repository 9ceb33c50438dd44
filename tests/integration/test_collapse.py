"""KL weighting, free bits, collapse diagnostics, aggressive training and the autoencoder baseline."""

import csv
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO

from pyrogen.cli import main
from pyrogen.evaluation import log_importance_weights
from pyrogen.evaluation.diagnostics import (
    active_units,
    aggregate_mutual_information,
    collapse_diagnostics,
    mutual_information,
)
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.infer.aggressive import AggressiveSVI, AggressiveSwitch, WindowedStopping
from pyrogen.infer.kl_schedule import (
    MIN_KL_WEIGHT,
    ConstantKL,
    CyclicalKL,
    FreeBitsELBO,
    LinearWarmup,
    build_kl_schedule,
)
from pyrogen.models import VAE
from pyrogen.models.autoencoder import Autoencoder
from pyrogen.models.sequence import RandomLSTMLanguageModel, SequenceVAE
from tests.conftest import requires_fashion_mnist


@pytest.fixture
def vae_and_x():
    vae = VAE(latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.3))
    return vae, x


def _terms(vae, x, seed):
    """log p(x|z) and log p(z) - log q(z|x) summed over the batch, on the draw of ``seed``."""
    pyro.set_rng_seed(seed)
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    rec = model.nodes["x"]["fn"].log_prob(x).sum()
    z = guide.nodes["z"]["value"]
    return rec, (model.nodes["z"]["fn"].log_prob(z) - guide.nodes["z"]["fn"].log_prob(z)).sum()


# --- KL weight λ ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kl_weight", [1.0, 0.3, 1e-3])
def test_kl_weight_scales_exactly_the_kl_term(vae_and_x, kl_weight):
    vae, x = vae_and_x
    rec, kl_term = _terms(vae, x, seed=7)
    pyro.set_rng_seed(7)
    loss = ReparamTrace_ELBO().differentiable_loss(vae.model, vae.guide, x, kl_weight=kl_weight)
    torch.testing.assert_close(loss, -(rec + kl_weight * kl_term), rtol=1e-6, atol=1e-3)
    # the scaled objective differs from the true ELBO (λ = 1) by exactly (1 - λ) KL-term
    pyro.set_rng_seed(7)
    unscaled = ReparamTrace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    torch.testing.assert_close(loss - unscaled, (1 - kl_weight) * kl_term, rtol=1e-5, atol=1e-3)


def test_free_bits_zero_is_the_analytic_kl_elbo_and_floors_each_dimension(vae_and_x):
    vae, x = vae_and_x
    pyro.set_rng_seed(3)
    ours = FreeBitsELBO(0.0).differentiable_loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    meanfield = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x)
    torch.testing.assert_close(ours, meanfield, rtol=1e-6, atol=1e-3)
    # with ε above every dimension's KL the KL term is exactly B · D · ε
    params = vae.encode(x)
    kl = torch.distributions.kl_divergence(dist.Normal(params["loc"], params["scale"]), dist.Normal(0.0, 1.0))
    eps = kl.mean(0).max().item() + 1.0
    pyro.set_rng_seed(3)
    floored = FreeBitsELBO(eps).differentiable_loss(vae.model, vae.guide, x)
    rec, _ = _terms(vae, x, seed=3)
    torch.testing.assert_close(floored, -rec + x.shape[0] * 3 * eps, rtol=1e-6, atol=1e-3)
    # and no gradient reaches the encoder's scale through the KL term
    with pytest.raises(ValueError, match="free_bits must be >= 0 nats, got -1"):
        FreeBitsELBO(-1)


def test_kl_schedules():
    assert ConstantKL(0.5)(3.0) == 0.5
    warm = LinearWarmup(warmup_epochs=10, start=0.1)
    assert [warm(t) for t in (0, 5, 10, 20)] == pytest.approx([0.1, 0.55, 1.0, 1.0])
    cyc = CyclicalKL(total_epochs=8, num_cycles=4, ratio=0.5)  # period 2, ramp over 1 epoch
    assert [cyc(t) for t in (0, 0.5, 1.0, 1.5, 2.0, 2.25, 7.9, 8.0, 100)] == pytest.approx(
        [MIN_KL_WEIGHT, 0.5, 1.0, 1.0, MIN_KL_WEIGHT, 0.25, 1.0, 1.0, 1.0]
    )
    assert isinstance(build_kl_schedule("cyclical", epochs=8), CyclicalKL)
    with pytest.raises(ValueError, match="kl schedule must be one of"):
        build_kl_schedule("sigmoid", epochs=8)
    with pytest.raises(ValueError, match="kl weight must be > 0"):
        ConstantKL(0.0)


# --- diagnostics ---------------------------------------------------------------------------------


def test_mutual_information_is_zero_for_a_guide_that_ignores_x():
    q = dist.Normal(torch.tensor([0.3, -1.0]).expand(500, 2), torch.tensor([1.0, 2.0]).expand(500, 2)).to_event(1)
    assert abs(mutual_information(q)) < 1e-5  # every q(z|x_j) is the same: exactly 0


def test_mutual_information_matches_a_linear_gaussian_model():
    # x ~ N(0, 1), q(z|x) = N(a x, s^2): I(x; z) = 1/2 log(1 + a^2 / s^2)
    a, s = 1.5, 1.0
    truth = 0.5 * math.log(1 + a**2 / s**2)
    torch.manual_seed(0)
    values = []
    for _ in range(10):
        x = torch.randn(1000, 1)
        values.append(mutual_information(dist.Normal(a * x, s).to_event(1)))
    estimate = sum(values) / len(values)
    # batch 1000: the aggregate's log-sum-exp bias is far below the 0.03-nat tolerance
    assert estimate == pytest.approx(truth, abs=0.03)


def test_full_set_mutual_information_matches_the_closed_form_beyond_the_batch_cap():
    # x ~ N(0, 1), q(z|x) = N(a x, 1): I(x; z) = 1/2 log(1 + a^2). With a = 200 that is 5.30 nats, above
    # ln 100 = 4.61, the most that He et al.'s estimator can give with the aggregate from a batch of 100
    a, n = 200.0, 4000
    truth = 0.5 * math.log(1 + a**2)
    torch.manual_seed(0)
    x = torch.randn(n, 1)
    blocks = [dist.Normal(a * x[i : i + 500], 1.0).to_event(1) for i in range(0, n, 500)]
    full, cap = aggregate_mutual_information(blocks)
    assert cap == pytest.approx(math.log(n))
    # seeds 0-2 give 5.25-5.27 (the one-draw log-sum-exp estimate is biased low by O(1/N) terms)
    assert full == pytest.approx(truth, abs=0.1)
    per_batch = sum(mutual_information(dist.Normal(a * x[i : i + 100], 1.0).to_event(1)) for i in range(0, n, 100)) / 40
    assert per_batch < math.log(100) < truth - 0.6  # saturated: about 4.2
    # a weakly informative code, where both agree with the truth
    small = 0.5 * math.log(1 + 1.5**2)
    full_small, _ = aggregate_mutual_information(
        [dist.Normal(1.5 * x[i : i + 500], 1.0).to_event(1) for i in range(0, n, 500)]
    )
    assert full_small == pytest.approx(small, abs=0.03)


def test_full_set_mutual_information_by_matrix_products_equals_the_pairwise_densities(monkeypatch):
    # sharp posteriors far from 0 (|mu| / sigma up to about 1e4): the expanded square of the matrix-product
    # path cancels terms of 1e8 per dimension, which float64 holds to far below the 1e-4 nats asked here
    from pyrogen.evaluation import diagnostics

    torch.manual_seed(0)
    loc, scale = 3 * torch.randn(1500, 8), 1e-3 + 1e-2 * torch.rand(1500, 8)
    blocks = [dist.Normal(loc[i : i + 500], scale[i : i + 500]).to_event(1) for i in range(0, 1500, 500)]
    # informative codes on a wide spread: no pair but j = i counts, the estimate is at its cap
    torch.manual_seed(1)
    fast, cap = aggregate_mutual_information(blocks)
    monkeypatch.setattr(diagnostics, "_diagonal_normal", lambda q: None)  # the (B_i, N, D) differences
    torch.manual_seed(1)
    direct, _ = aggregate_mutual_information(blocks)
    assert fast == pytest.approx(direct, abs=1e-4)
    assert fast == pytest.approx(cap, abs=1e-3)
    # overlapping posteriors, where the aggregate mixes many of them
    monkeypatch.undo()
    wide = [dist.Normal(0.3 * loc[i : i + 500], 0.5 + scale[i : i + 500]).to_event(1) for i in range(0, 1500, 500)]
    torch.manual_seed(2)
    fast, _ = aggregate_mutual_information(wide)
    monkeypatch.setattr(diagnostics, "_diagonal_normal", lambda q: None)
    torch.manual_seed(2)
    direct, _ = aggregate_mutual_information(wide)
    assert 0.5 < direct < cap - 0.5
    assert fast == pytest.approx(direct, abs=1e-4)


def test_collapse_diagnostics_reports_the_mi_cap():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(30.0 * x, 1.0).to_event(1))

    torch.manual_seed(1)
    x = torch.randn(1200, 1)
    full = collapse_diagnostics(model, guide, x, batch_size=100)
    batch = collapse_diagnostics(model, guide, x, batch_size=100, mi="batch")
    assert full["mi_cap"] == pytest.approx(math.log(1200)) and batch["mi_cap"] == pytest.approx(math.log(100))
    truth = 0.5 * math.log(1 + 30.0**2)  # 3.40 nats
    assert full["mi"] == pytest.approx(truth, abs=0.06)
    assert batch["mi"] < truth - 0.1  # the per-batch aggregate of 100 codes underestimates
    assert full["active_units"] == batch["active_units"] == 1


def test_active_units_count_exactly_on_constructed_means():
    n = 1000
    signs = torch.ones(n, dtype=torch.float64)
    signs[1::2] = -1
    variances = torch.tensor([1.0, 0.0, 0.0101, 0.0099, 0.5], dtype=torch.float64)
    means = signs[:, None] * variances.sqrt() + torch.tensor([5.0, 2.0, -1.0, 0.0, 0.0], dtype=torch.float64)
    count, var = active_units(means)
    torch.testing.assert_close(var, variances)
    assert count == 3  # dimensions 0, 2 (just above 0.01) and 4
    assert active_units(means, threshold=0.6)[0] == 1


def test_collapse_diagnostics_of_a_collapsed_and_an_informative_encoder(vae_and_x):
    vae, _ = vae_and_x
    x = torch.bernoulli(torch.rand(200, 1, 28, 28))
    with torch.no_grad():  # collapsed: q(z|x) = p(z) for every x (loc 0, scale exp(0) = 1)
        for p in vae.encoder.parameters():
            p.zero_()
    out = collapse_diagnostics(vae.model, vae.guide, x, batch_size=100)
    assert out["active_units"] == 0 and abs(out["kl"]) < 1e-5 and abs(out["mi"]) < 1e-5


# --- aggressive training -------------------------------------------------------------------------


def _run(rule, losses):
    """Feed scripted losses until the rule says stop; return the number of steps taken."""
    rule.reset()
    for loss in losses:
        if not rule.update(loss):
            return rule.steps
    return None


def test_inner_loop_stops_when_a_window_does_not_improve():
    rule = WindowedStopping(window=3, max_steps=100)
    # window means 5, 4, 4: the third window is not lower -> stop after its last step
    assert _run(rule, [5, 5, 5, 4, 4, 4, 4, 4, 4, 1, 1, 1]) == 9
    # window means 5, 6: stop at the end of the second window
    assert _run(rule, [5, 5, 5, 7, 5, 6, 0, 0, 0]) == 6
    # a rise inside a window does not stop the loop; only window means count
    # a rise inside a window does not stop the loop; only window means count (3, 7/3, 2, 2)
    assert _run(rule, [3, 3, 3, 1, 5, 1, 2, 2, 2, 2, 2, 2]) == 12
    # a steadily falling loss runs into the cap
    assert _run(WindowedStopping(window=10, max_steps=100), [100 - i for i in range(200)]) == 100
    assert _run(WindowedStopping(window=15, max_steps=40), [100 - i for i in range(200)]) == 40


def test_aggressive_mode_switches_off_by_mutual_information():
    text = AggressiveSwitch(patience=1)  # He et al., text: leave as soon as MI drops
    assert [text.update(mi) for mi in (0.1, 0.5, 0.4, 9.0)] == [True, True, False, False]
    images = AggressiveSwitch(patience=5)  # images: after 5 failures to beat the best
    states = [images.update(mi) for mi in (1.0, 0.5, 2.0, 1.0, 1.9, 2.0, 0.0, 3.0, 1.0)]
    assert states == [True, True, True, True, True, True, False, False, False]
    restored = AggressiveSwitch(patience=5)
    restored.load_state_dict(images.state_dict())
    assert not restored.update(10.0)


def test_aggressive_step_moves_only_the_encoder_in_the_inner_loop_and_only_the_decoder_after(vae_and_x):
    vae, x = vae_and_x
    enc = torch.optim.SGD(vae.encoder.parameters(), lr=0.01)
    dec = torch.optim.SGD(vae.decoder.parameters(), lr=0.01)
    batches = []

    def fresh():
        batches.append(torch.bernoulli(torch.full((6, 1, 28, 28), 0.3)))
        return batches[-1]

    svi = AggressiveSVI(vae.model, vae.guide, enc, dec, ReparamTrace_ELBO(), fresh, window=2, max_steps=6)
    before = {n: p.detach().clone() for n, p in vae.named_parameters()}
    steps = svi.inner_loop()
    assert steps == len(batches) == svi.inner_steps and 2 <= steps <= 6
    changed = {n for n, p in vae.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith("encoder.") for n in changed)
    # an aggressive step: one inner step (max_steps = 1), on x itself as in He et al.'s code,
    # then the generator step on x
    svi.stopping = WindowedStopping(window=1, max_steps=1)
    inner_calls, inner_steps = len(batches), svi.inner_steps
    svi.step(x)
    assert len(batches) == inner_calls and svi.inner_steps == inner_steps + 1
    # switched off, a step is an ordinary joint step: no inner batches, both networks move
    svi.aggressive = False
    mid = {n: p.detach().clone() for n, p in vae.named_parameters()}
    svi.step(x)
    assert len(batches) == inner_calls and svi.inner_steps == inner_steps + 1
    moved = {n.split(".")[0] for n, p in vae.named_parameters() if not torch.equal(p, mid[n])}
    assert moved == {"encoder", "decoder"}
    with pytest.raises(ValueError, match="share parameters"):
        AggressiveSVI(vae.model, vae.guide, enc, torch.optim.SGD(vae.parameters(), lr=0.1), ReparamTrace_ELBO(), fresh)


# --- autoencoder baseline ------------------------------------------------------------------------


def test_autoencoder_objective_is_reconstruction_plus_log_prior_at_the_code():
    ae = Autoencoder(latent_dim=3, hidden=(16,))
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.4))
    code = ae.code(x)
    expected = ae.likelihood(ae.decoder(code)).log_prob(x).sum() + dist.Normal(0.0, 1.0).log_prob(code).sum()
    loss = ReparamTrace_ELBO().differentiable_loss(ae.model, ae.guide, x)
    torch.testing.assert_close(loss, -expected, rtol=1e-6, atol=1e-3)
    svi = TorchSVI(ae.model, ae.guide, torch.optim.Adam(ae.parameters(), lr=1e-3), ReparamTrace_ELBO())
    first = svi.step(x)
    for _ in range(20):
        last = svi.step(x)
    assert last < first


def test_importance_sampling_refuses_a_point_mass_guide():
    ae = Autoencoder(latent_dim=2, hidden=(8,))
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.4))
    with pytest.raises(ValueError, match="guide site 'z' is a point mass"):
        log_importance_weights(ae.model, ae.guide, x, 10)


@requires_fashion_mnist
def test_cli_trains_an_autoencoder_and_refuses_its_log_px_in_one_line(tmp_path, capsys):
    small = [
        "--train-size",
        "200",
        "--test-size",
        "100",
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(["train", "ae", "--out", str(tmp_path / "ae"), *small]) == 0
    assert "test objective log p(x|z) + log p(z) at the code" in capsys.readouterr().out
    with open(tmp_path / "ae" / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert set(row) >= {"test_objective", "active_units"}
    assert main(["evaluate", str(tmp_path / "ae"), "--eval-samples", "10", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    # the one-line refusal of issue 15 (item 12): only log p(x) is refused, the objective is evaluated
    assert err == (
        "pyrogen: error: argument --eval-samples: an autoencoder run has no log p(x) to estimate "
        "(its guide is a point mass); omit --eval-samples to evaluate its test objective"
    )


@requires_fashion_mnist
def test_cli_vae_logs_collapse_diagnostics_with_schedules_free_bits_and_aggressive_mode(tmp_path, capsys):
    small = [
        "--train-size",
        "200",
        "--test-size",
        "100",
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--latent-dim",
        "2",
        "--no-progress",
        "--device",
        "cpu",
        "--batch-size",
        "100",
        "--eval-samples",
        "0",
    ]
    out = tmp_path / "vae"
    assert (
        main(
            [
                "train",
                "vae",
                "--out",
                str(out),
                *small,
                "--kl-schedule",
                "cyclical",
                "--kl-cycles",
                "1",
                "--free-bits",
                "0.1",
                "--aggressive",
                "--aggressive-patience",
                "1",
                "--validation-size",
                "50",
            ]
        )
        == 0
    )
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1]
    for r in rows:
        assert {"test_elbo", "kl", "mi", "active_units", "aggressive"} <= set(r)
        assert float(r["kl"]) >= 0 and 0 <= int(r["active_units"]) <= 2
    assert int(rows[0]["aggressive"]) == 1  # the first epoch sets the best MI, so it stays on
    assert "validation_mi" in rows[0]  # the switch reads the validation split


def test_cli_refuses_aggressive_mode_without_a_validation_split(tmp_path, capsys):
    assert main(["train", "vae", "--out", str(tmp_path / "agg"), "--aggressive", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "pyrogen: error: --aggressive leaves aggressive mode when the mutual information of a validation "
        "split stops improving, never the test set's; give --validation-size N"
    ]
    assert not (tmp_path / "agg").exists()


def _fit_sequence_vae(aggressive, train_x, epochs=2, batch_size=50, seed=0):
    pyro.set_rng_seed(seed)
    vae = SequenceVAE(vocab_size=20, seq_len=10, latent_dim=4, embed_dim=16, hidden=32)
    gen = torch.Generator().manual_seed(seed)
    n = train_x.shape[0]
    if aggressive:
        enc = torch.optim.Adam(vae.encoder.parameters(), lr=1e-3)
        dec = torch.optim.Adam(vae.decoder.parameters(), lr=1e-3)
        svi = AggressiveSVI(
            vae.model,
            vae.guide,
            enc,
            dec,
            ReparamTrace_ELBO(),
            lambda: train_x[torch.randint(n, (batch_size,), generator=gen)],
            window=15,
            max_steps=30,
        )
    else:
        svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=1e-3), ReparamTrace_ELBO())
    with pyro.validation_enabled(False):
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(n // batch_size):
                svi.step(train_x[perm[i * batch_size : (i + 1) * batch_size]])
    return vae


def test_lstm_decoder_collapses_under_standard_training_and_keeps_active_units_under_aggressive():
    lm = RandomLSTMLanguageModel(vocab_size=20, seq_len=10, latent_dim=2, seed=0)
    train_x, _ = lm.generate(1000, seed=1)
    test_x, _ = lm.generate(300, seed=2)
    results, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # tiny LSTMs: one thread is faster than two
    try:
        for aggressive in (False, True):
            vae = _fit_sequence_vae(aggressive, train_x)
            with pyro.validation_enabled(False):
                results[aggressive] = collapse_diagnostics(vae.model, vae.guide, test_x, batch_size=300)
    finally:
        torch.set_num_threads(threads)
    standard, aggressive = results[False], results[True]
    assert standard["active_units"] == 0 and standard["kl"] < 0.05, standard
    assert aggressive["active_units"] >= 1 and aggressive["kl"] > standard["kl"], aggressive


def test_sequence_vae_decoder_dropout_acts_in_training_only():
    vae = SequenceVAE(vocab_size=7, seq_len=5, latent_dim=2, embed_dim=8, hidden=16, dropout=0.5)
    x = torch.randint(7, (4, 5))
    z = torch.randn(4, 2)
    torch.manual_seed(1)
    a = vae.logits(z, x)
    b = vae.logits(z, x)
    assert not torch.equal(a, b)  # different dropout masks
    vae.eval()
    c = vae.logits(z, x)
    assert torch.equal(c, vae.logits(z, x))
    # in eval mode the decoder is the one without dropout
    plain = SequenceVAE(vocab_size=7, seq_len=5, latent_dim=2, embed_dim=8, hidden=16)
    plain.load_state_dict(vae.state_dict())
    assert torch.equal(plain.logits(z, x), c)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\), got 1\.0"):
        SequenceVAE(vocab_size=7, seq_len=5, dropout=1.0)


def test_he2019_heads_are_bias_free_and_parameterise_the_log_variance():
    vae = SequenceVAE(vocab_size=7, seq_len=5, latent_dim=2, embed_dim=8, hidden=6, heads="he2019")
    head = vae.encoder[1]
    assert head.linear.bias is None and vae.decoder.init.bias is None and vae.decoder.out.bias is None
    h = torch.randn(3, 6)
    raw = h @ head.linear.weight.T
    params = head(h)
    assert torch.equal(params["loc"], raw[:, :2])
    assert torch.allclose(params["scale"], torch.exp(0.5 * raw[:, 2:]), rtol=0, atol=0)
    # the default keeps ParameterHead (log σ with a bias) and biased decoder maps
    plain = SequenceVAE(vocab_size=7, seq_len=5, latent_dim=2, embed_dim=8, hidden=6)
    assert plain.decoder.init.bias is not None and plain.decoder.out.bias is not None
    with pytest.raises(ValueError, match=r"heads must be 'pyrogen' or 'he2019', got 'x'"):
        SequenceVAE(vocab_size=7, seq_len=5, heads="x")


def test_sgd_step_on_log_sigma_is_four_times_smaller_with_the_log_variance_head():
    """One SGD step of lr η on a loss with ∂L/∂log σ = g moves log σ by −η g (|h|² + 1) through
    ParameterHead (weight and bias) and by −η g |h|²/4 through LogVarHead (log σ = w·h / 2)."""
    from pyrogen.distributions import ParameterHead
    from pyrogen.models.sequence import LogVarHead

    torch.manual_seed(0)
    h = torch.randn(1, 5, dtype=torch.float64)
    lr, g = 0.1, 0.7
    moves = {}
    for name, head in (("pyrogen", ParameterHead(5, "normal", 1)), ("he2019", LogVarHead(5, 1))):
        head = head.double()
        before = head(h)["scale"].log().detach()
        (g * head(h)["scale"].log()).sum().backward()
        with torch.no_grad():
            for p in head.parameters():
                if p.grad is not None:  # ParameterHead's loc layer is not on the path
                    p -= lr * p.grad
        moves[name] = (head(h)["scale"].log() - before).item()
    sq = (h**2).sum().item()
    assert moves["pyrogen"] == pytest.approx(-lr * g * (sq + 1), rel=1e-9)
    assert moves["he2019"] == pytest.approx(-lr * g * sq / 4, rel=1e-9)
