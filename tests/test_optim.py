"""He et al.'s (ICLR 2019) optimisation recipe: uniform init, loss reduction, clipping, plateau decay,
and its effect."""

import io

import pyro
import pytest
import torch
from torch import nn

from pyrogen.evaluation.diagnostics import collapse_diagnostics
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.infer.aggressive import AggressiveSVI
from pyrogen.models.sequence import RandomLSTMLanguageModel, SequenceVAE
from pyrogen.optim import (
    OptimConfig,
    PerExampleLoss,
    PlateauDecay,
    attach_gradient_clipping,
    build_optimizer,
    initialize_,
    reduce_loss,
    split_validation,
    uniform_init_,
)


def _sequence_vae(**kw):
    return SequenceVAE(vocab_size=7, seq_len=5, latent_dim=2, embed_dim=8, hidden=12, **kw)


def _global_norm(params):
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])).item()


def test_recipe_settings_and_command_line():
    he = OptimConfig.from_recipe("he2019")
    assert (he.optimizer, he.lr, he.momentum, he.loss_reduction, he.clip_norm, he.init) == (
        "sgd",
        1.0,
        0.0,
        "mean",
        5.0,
        "uniform",
    )
    assert (he.decay, he.decay_factor, he.decay_epochs, he.max_decay, he.decay_start_epoch) == (True, 0.5, 2, 5, 15)
    default = OptimConfig()
    assert (default.optimizer, default.lr, default.loss_reduction, default.clip_norm, default.init, default.decay) == (
        "adam",
        1e-3,
        "sum",
        None,
        "default",
        False,
    )
    from pyrogen.cli import _optim_settings, build_parser

    def settings(*options):
        return _optim_settings(
            build_parser().parse_args(["train", "vae", "--out", "x", "--validation-size", "10", *options])
        )

    he_cli = settings("--recipe", "he2019")
    assert (
        he_cli["optimizer"],
        he_cli["lr"],
        he_cli["clip_norm"],
        he_cli["init"],
        he_cli["loss_reduction"],
        he_cli["lr_decay_epochs"],
    ) == ("sgd", 1.0, 5.0, "uniform", "mean", 2)
    mixed = settings("--recipe", "he2019", "--optimizer", "adam", "--lr", "1e-3", "--clip-norm", "0")
    assert (mixed["optimizer"], mixed["lr"], mixed["clip_norm"], mixed["init"], mixed["loss_reduction"]) == (
        "adam",
        1e-3,
        None,
        "uniform",
        "mean",
    )
    image = OptimConfig.from_recipe("he2019-image")  # image.py: Adam for encoder and decoder, clip_grad = 5.0,
    # loss.mean(), the networks' own init, decay_epoch = 20 from epoch 0 (no start), max_decay = 5
    assert (image.optimizer, image.lr, image.loss_reduction, image.clip_norm, image.init) == (
        "adam",
        1e-3,
        "mean",
        5.0,
        "default",
    )
    assert (
        image.decay,
        image.decay_factor,
        image.decay_epochs,
        image.max_decay,
        image.decay_start_epoch,
        image.decay_reference,
    ) == (True, 0.5, 20, 5, 0, "best")
    assert he.decay_reference == "last"
    image_cli = settings("--recipe", "he2019-image")
    assert (
        image_cli["optimizer"],
        image_cli["lr"],
        image_cli["clip_norm"],
        image_cli["init"],
        image_cli["loss_reduction"],
        image_cli["lr_decay_epochs"],
        image_cli["decay_start_epoch"],
        image_cli["decay_reference"],
    ) == ("adam", 1e-3, 5.0, "default", "mean", 20, 0, "best")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        OptimConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="recipe must be one of"):
        OptimConfig.from_recipe("bowman2016")


def test_uniform_init_bounds_every_weight_and_the_embeddings():
    torch.manual_seed(0)
    vae = _sequence_vae()
    default_max = max(p.abs().max().item() for p in vae.parameters())
    assert default_max > 0.1  # PyTorch's initialisation is far outside the recipe's bounds
    old = {n: p.clone() for n, p in vae.named_parameters()}
    initialize_(vae, OptimConfig.from_recipe("he2019"))
    embeddings = {id(m.weight) for m in vae.modules() if isinstance(m, nn.Embedding)}
    assert len(embeddings) == 2  # encoder and decoder
    for name, p in vae.named_parameters():
        bound = 0.1 if id(p) in embeddings else 0.01
        assert p.abs().max().item() <= bound, name
        assert not torch.equal(p, old[name]), name
        if p.numel() >= 24:  # filled over the interval, not only near zero
            assert p.abs().max().item() > 0.5 * bound, name
    # default init leaves the module alone
    before = {n: p.clone() for n, p in vae.named_parameters()}
    initialize_(vae, OptimConfig())
    assert all(torch.equal(p, before[n]) for n, p in vae.named_parameters())
    with pytest.raises(ValueError, match="scales must be > 0"):
        uniform_init_(vae, scale=0.0)


def test_mean_and_sum_reductions_differ_by_exactly_the_batch_size():
    vae = _sequence_vae()
    x = torch.randint(7, (16, 5))
    grads = {}
    for reduction in ("sum", "mean"):
        vae.zero_grad(set_to_none=True)
        pyro.set_rng_seed(3)  # the same draw of z for both
        loss = reduce_loss(ReparamTrace_ELBO(), reduction).differentiable_loss(vae.model, vae.guide, x)
        loss.backward()
        grads[reduction] = (loss.detach(), [p.grad.clone() for p in vae.parameters()])
    (ls, gs), (lm, gm) = grads["sum"], grads["mean"]
    assert isinstance(reduce_loss(ReparamTrace_ELBO(), "mean"), PerExampleLoss)
    torch.testing.assert_close(ls, 16 * lm, rtol=1e-6, atol=0)
    for a, b in zip(gs, gm):
        # B = 16 is a power of two: dividing by it is exact, so the gradients agree to the last bit
        assert torch.equal(a, 16 * b)
    assert max(g.abs().max().item() for g in gs) > 0


def test_clipping_bounds_the_global_norm_in_plain_and_inner_steps():
    torch.manual_seed(0)
    vae = _sequence_vae()
    x = torch.randint(7, (8, 5))
    clip = 0.05
    opt = torch.optim.SGD(vae.parameters(), lr=0.0)  # lr 0: the step leaves the clipped gradients to inspect
    seen = []
    handles = attach_gradient_clipping(opt, vae.parameters(), clip)
    opt.register_step_pre_hook(lambda o, a, k: seen.append(_global_norm(vae.parameters())))
    svi = TorchSVI(vae.model, vae.guide, opt, ReparamTrace_ELBO())
    with pyro.validation_enabled(False):
        svi.step(x)
    assert len(handles) == 1 and seen[0] == pytest.approx(clip, rel=1e-4)  # it was larger and got clipped
    handles[0].remove()
    with pyro.validation_enabled(False):
        svi.step(x)
    assert seen[1] > 10 * clip  # without the hook the norm is far above the bound

    # aggressive mode: clipped after every inner (encoder-only) backward too, over all parameters
    enc = torch.optim.SGD(vae.encoder.parameters(), lr=0.1)
    dec = torch.optim.SGD(vae.decoder.parameters(), lr=0.1)
    inner, raw = [], []
    enc.register_step_pre_hook(lambda o, a, k: inner.append(_global_norm(vae.parameters())))
    agg = AggressiveSVI(
        vae.model,
        vae.guide,
        enc,
        dec,
        ReparamTrace_ELBO(),
        lambda: torch.randint(7, (8, 5)),
        window=2,
        max_steps=6,
        clip_norm=clip,
    )
    enc.register_step_pre_hook(lambda o, a, k: raw.append(agg.last_grad_norm.item()))
    with pyro.validation_enabled(False):
        agg.step(x)
    assert len(inner) == agg.inner_steps >= 2
    assert all(n <= clip * (1 + 1e-4) for n in inner), inner
    assert all(r > clip for r in raw)  # every inner gradient needed clipping: the bound did the work


def test_first_inner_step_is_on_the_current_batch():
    vae = _sequence_vae()
    x = torch.randint(7, (8, 5))
    drawn = []

    def fresh():
        drawn.append(torch.randint(7, (8, 5)))
        return drawn[-1]

    enc = torch.optim.SGD(vae.encoder.parameters(), lr=0.01)
    dec = torch.optim.SGD(vae.decoder.parameters(), lr=0.01)
    agg = AggressiveSVI(vae.model, vae.guide, enc, dec, ReparamTrace_ELBO(), fresh, window=3, max_steps=5)
    with pyro.validation_enabled(False):
        agg.step(x)
    assert len(drawn) == agg.inner_steps - 1  # He et al.: the first inner step uses x itself
    agg_fresh = AggressiveSVI(
        vae.model, vae.guide, enc, dec, ReparamTrace_ELBO(), fresh, window=3, max_steps=5, first_on_batch=False
    )
    before = len(drawn)
    with pyro.validation_enabled(False):
        agg_fresh.step(x)
    assert len(drawn) - before == agg_fresh.inner_steps


def _decay_run(losses, model, opt, decay, start=0):
    """Scripted validation losses with one SGD step between epochs; returns the outcomes."""
    out = []
    for epoch in range(start, len(losses)):
        opt.zero_grad()
        (model.weight.sum() * (epoch + 1) + model.bias.sum()).backward()
        opt.step()
        out.append(decay.step(epoch, losses[epoch]))
    return out


def test_plateau_decay_follows_the_authors_rule_and_resumes_bit_for_bit():
    losses = [5.0, 4.0, 4.5, 4.6, 3.9, 4.2, 4.3, 4.4, 4.5, 3.0, 3.5, 3.6, 3.7]

    def fresh():
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
        return model, opt, PlateauDecay(model, opt, factor=0.5, patience=2, max_decay=3, start_epoch=4)

    model, opt, decay = fresh()
    outcomes = _decay_run(losses, model, opt, decay)
    # epochs 2, 3 rise above the reference 4.0, but decay waits for epoch >= 4; epochs 5, 6 rise above 3.9:
    # decay at 6 (back to epoch 4's weights); 7 and 8 rise above 4.3 (the reference after a decay): decay at 8;
    # 10-11 rise above 3.0: decay at 11, the third and last
    assert outcomes == [
        "improved",
        "improved",
        "plateau",
        "plateau",
        "improved",
        "plateau",
        "decayed",
        "plateau",
        "decayed",
        "improved",
        "plateau",
        "finished",
        "plateau",
    ]
    assert decay.finished and decay.decays == 3 and decay.best_epoch == 9
    assert opt.param_groups[0]["lr"] == 0.125 and decay.lr_scale == 0.125

    # interrupted after epoch 7 (state in a checkpoint), rebuilt, resumed: identical to the uninterrupted run
    model_a, opt_a, decay_a = fresh()
    _decay_run(losses[:8], model_a, opt_a, decay_a)
    buf = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "opt": opt_a.state_dict(), "decay": decay_a.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=False)
    model_b, opt_b, decay_b = fresh()
    model_b.load_state_dict(state["model"])
    opt_b.load_state_dict(state["opt"])
    decay_b.load_state_dict(state["decay"])
    resumed = _decay_run(losses, model_b, opt_b, decay_b, start=8)
    assert resumed == outcomes[8:]
    for a, b in zip(model.parameters(), model_b.parameters()):
        assert torch.equal(a, b)
    assert decay_b.state_dict()["best_loss"] == decay.best_loss and decay_b.decays == decay.decays
    for k, v in decay.best_state.items():
        assert torch.equal(v, decay_b.best_state[k])
    # restore_best loads the best-validation weights (epoch 9's) for evaluation
    decay.restore_best()
    for k, v in model.state_dict().items():
        assert torch.equal(v, decay.best_state[k])


def _image_py_decay_epochs(losses, decay_epoch, max_decay):
    """The epochs at which He et al.'s ``image.py`` halves the rate, its loop transcribed (loss = -val ELBO)."""
    best_loss, not_improved, decays, out = 1e4, 0, 0, []
    for epoch, loss in enumerate(losses):
        if loss < best_loss:
            best_loss = loss
        if loss > best_loss:
            not_improved += 1
            if not_improved >= decay_epoch:
                not_improved, decays = 0, decays + 1
                out.append(epoch)
        else:
            not_improved = 0
        if decays == max_decay:
            break
    return out


def test_plateau_decay_with_the_best_as_reference_follows_image_py():
    # after the decay at epoch 2 (loss 6.0), 5.5 and 5.4 are below that loss but above the best, 4.0:
    # image.py counts them (decay again at 4), text.py's rule compares with 6.0 and resets
    losses = [4.0, 5.0, 6.0, 5.5, 5.4, 5.3, 3.0, 3.5, 3.6]
    assert _image_py_decay_epochs(losses, 2, 5) == [2, 4, 8]

    def decay_epochs(reference):
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        decay = PlateauDecay(model, opt, patience=2, max_decay=5, start_epoch=0, reference=reference)
        return [e for e, o in enumerate(_decay_run(losses, model, opt, decay)) if o in ("decayed", "finished")]

    assert decay_epochs("best") == [2, 4, 8]
    assert decay_epochs("last") == [2, 8]
    config = OptimConfig.from_recipe("he2019-image")
    assert PlateauDecay.from_config(nn.Linear(1, 1), [], config).reference_rule == "best"
    with pytest.raises(ValueError, match=r"reference must be one of \['last', 'best'\], got 'mean'"):
        PlateauDecay(nn.Linear(1, 1), [], reference="mean")


def test_plateau_decay_reloads_the_best_checkpoint_and_restarts_the_optimizer():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    decay = PlateauDecay(model, opt, patience=1, max_decay=2, start_epoch=0)
    _decay_run([1.0], model, opt, decay)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    assert opt.state  # Adam has moments now
    assert _decay_run([1.0, 2.0], model, opt, decay, start=1) == ["decayed"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert not opt.state and opt.param_groups[0]["lr"] == pytest.approx(0.05)
    # decay=False: only the best-checkpoint bookkeeping
    keep = PlateauDecay(model, opt, patience=1, start_epoch=0, decay=False)
    assert [keep.step(e, v) for e, v in enumerate([3.0, 4.0, 5.0, 2.0])] == [
        "improved",
        "plateau",
        "plateau",
        "improved",
    ]
    assert keep.decays == 0 and keep.best_epoch == 3


def test_split_validation_is_disjoint_and_seeded():
    data = torch.arange(100)
    train, val = split_validation(data, 10, seed=4)
    assert train.shape == (90,) and val.shape == (10,)
    assert set(train.tolist()) | set(val.tolist()) == set(range(100)) and not set(train.tolist()) & set(val.tolist())
    assert torch.equal(split_validation(data, 10, seed=4)[1], val)
    assert split_validation(data, 0) == (data, None)


def _fit(aggressive, train_x, seed=0, steps=40, batch_size=16):
    """He et al.'s recipe (uniform init, SGD 1.0 on the mean loss, clip 5), ``steps`` generator steps."""
    pyro.set_rng_seed(seed)
    config = OptimConfig.from_recipe("he2019")
    vae = SequenceVAE(vocab_size=20, seq_len=10, latent_dim=2, embed_dim=16, hidden=16, dropout=0.5)
    initialize_(vae, config)
    loss = reduce_loss(ReparamTrace_ELBO(), config.loss_reduction)
    gen = torch.Generator().manual_seed(seed)
    n = train_x.shape[0]

    def fresh():
        return train_x[torch.randint(n, (batch_size,), generator=gen)]

    if aggressive:
        enc, dec = build_optimizer(vae.encoder.parameters(), config), build_optimizer(vae.decoder.parameters(), config)
        svi = AggressiveSVI(
            vae.model, vae.guide, enc, dec, loss, fresh, window=15, max_steps=99, clip_norm=config.clip_norm
        )
    else:
        opt = build_optimizer(vae.parameters(), config)
        attach_gradient_clipping(opt, vae.parameters(), config.clip_norm)
        svi = TorchSVI(vae.model, vae.guide, opt, loss)
    with pyro.validation_enabled(False):
        for _ in range(steps):
            svi.step(fresh())
    vae.eval()
    return vae, svi


@pytest.mark.usefixtures("one_thread")
def test_aggressive_training_under_the_recipe_keeps_active_units_where_standard_training_collapses():
    lm = RandomLSTMLanguageModel(vocab_size=20, seq_len=10, latent_dim=2, seed=0)
    train_x, _ = lm.generate(1000, seed=1)
    val_x, _ = lm.generate(300, seed=2)
    results = {}
    for aggressive in (False, True):
        vae, svi = _fit(aggressive, train_x)
        with pyro.validation_enabled(False):
            results[aggressive] = collapse_diagnostics(vae.model, vae.guide, val_x, batch_size=300)
    standard, aggressive = results[False], results[True]
    assert standard["active_units"] == 0 and standard["mi"] < 0.02, standard
    assert aggressive["active_units"] >= 1 and aggressive["mi"] > 0.1, aggressive
