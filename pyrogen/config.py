"""Run configurations as plain dicts: the defaults of every kind of run.

A configuration is what ``config.json`` holds and what a checkpoint embeds:
``{"kind", "model", "data", "train", "eval"}`` for the VAE family
(:func:`default_config`) and ``{"kind": "gan", "model", "discriminator",
"data", "train"}`` for GANs (:func:`default_gan_config`). The trainers in
:mod:`pyrogen.training` read them; :mod:`pyrogen.runs` rebuilds models from them.
"""

from pyrogen.distributions import default_binarize
from pyrogen.errors import DataError
from pyrogen.infer.gan_losses import GAN_LOSSES
from pyrogen.models.gan import ARCHITECTURES, NORMS, ConditionalGenerator, Generator
from pyrogen.models.registry import MODELS, make_model

DEFAULT_TRAIN = {
    "epochs": 10, "batch_size": 100, "lr": 1e-3, "elbo": "auto", "num_particles": 1,
    "seed": 0, "log_every": 20,
    # the objective: "auto" (meanfield where every latent pair has a closed-form KL, else trace), "trace",
    # "meanfield", "iwae" (num_particles K, DReG guide gradients with dreg) or "tc" (β-TC-VAE, tc_beta)
    "dreg": False, "tc_beta": 6.0,
    # trace's num_particles > 1 drawn in one vectorized run (False in runs made before this key existed)
    "vectorize_particles": True,
    # optimisation (pyrogen.optim; "he2019" is He et al. 2019's text recipe): "adam" or "sgd", the loss summed
    # ("sum", nats per batch) or averaged ("mean") over the batch, the global gradient norm clipped at clip_norm
    # (None: off), "default" or "uniform" init, and the lr halved after lr_decay_epochs epochs (0: off) without
    # a better validation ELBO, at most max_decay times from decay_start_epoch, reloading the best weights;
    # decay_reference: "last" counts epochs above the last loss that did not rise (text.py), "best" epochs above
    # the best (image.py, "he2019-image"); validation_size training examples are held out for the decay and
    # for the aggressive switch
    "recipe": "default", "optimizer": "adam", "momentum": 0.0, "loss_reduction": "sum", "clip_norm": None,
    "init": "default", "lr_decay_epochs": 0, "max_decay": 5, "decay_start_epoch": 15, "decay_reference": "last",
    "validation_size": 0,
    # KL weight λ on "z" (constant, linear warm-up or cyclical), free bits (nats per dimension),
    # aggressive inference-network training (He et al. 2019); see pyrogen.infer.kl_schedule/aggressive
    "kl_schedule": "constant", "kl_weight": 1.0, "kl_warmup_epochs": 10.0, "kl_start": 0.1,
    "kl_cycles": 4, "free_bits": 0.0, "aggressive": False, "aggressive_patience": 5,
    # run the ELBO's Python every step ("off"), record its graph once and replay it ("record",
    # pyrogen.infer.RecordedLoss), or record and compile it ("on", CompiledLoss); "auto" chooses
    "compile": "auto",
}  # fmt: skip
DEFAULT_DATA = {"dataset": "fashion-mnist", "root": None, "binarize": "dynamic",
                "train_size": None, "test_size": None}
DEFAULT_EVAL = {"num_samples": 1000, "batch_size": 100}


COMPILE_MODES = ("auto", "on", "record", "off")
AUTO_COMPILE_MIN_STEPS = 20000
"""``--compile auto`` compiles runs of at least this many steps (where a compiler works); shorter runs record.

Recording the step's graph takes 0.1-0.2 s and replays it at about 1.05x the hand-written
step (the eager step: 1.1x). Compiling the recording with inductor brings the step to about
0.98x, 0.58 ms of the 784-400-50 VAE's 4.2 ms at batch 100 on the 2-core CPU (2 threads),
but takes 9.6 s the first time (2.2 s once inductor's on-disk cache holds the graph; several
times longer on a loaded machine): it pays after about 16,600 steps, so runs of 20,000 steps
(33 epochs of Fashion-MNIST at batch 100) and more compile."""


def compile_mode(value):
    """``train.compile`` as one of :data:`COMPILE_MODES`; the booleans of older runs' configs mean on and off."""
    if value is True or value is False or value is None:
        return "on" if value else "off"
    if value not in COMPILE_MODES:
        raise DataError(f"train.compile must be one of {COMPILE_MODES} (or a boolean), got {value!r}")
    return value


def default_config(kind="vae", **model):
    """A complete run configuration: ``{"kind", "model", "data", "train", "eval"}``.

    ``model`` holds the model's constructor arguments; ``model="two-layer"`` among them
    builds :class:`~pyrogen.models.two_layer.TwoLayerVAE` (see :func:`~pyrogen.models.registry.make_model`).
    """
    if kind not in MODELS:
        raise ValueError(f"kind must be one of {sorted(MODELS)}, got {kind!r}")
    return {
        "kind": kind,
        "model": make_model(kind, **model).config,
        "data": {**DEFAULT_DATA, "binarize": default_binarize(model.get("likelihood", "bernoulli"))},
        "train": dict(DEFAULT_TRAIN),
        "eval": dict(DEFAULT_EVAL),
    }


DEFAULT_GAN_TRAIN = {
    "epochs": 10, "batch_size": 64, "loss": "nonsaturating", "gp_weight": 10.0, "d_steps": 1,
    "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.5, 0.999], "ema_decay": 0.0, "seed": 0, "log_every": 20,
    "num_fixed": 64, "divergence_threshold": 1e4, "collapse_threshold": 0.5, "overpower_accuracy": 0.98,
    "min_classes_covered": 8,
}  # fmt: skip
"""Training settings; ``ema_decay`` 0 turns the generator's moving average off (0.999 is usual);
``min_classes_covered``: the ``class-collapse`` flag's threshold."""
DEFAULT_GAN_DATA = {"dataset": "fashion-mnist", "root": None, "train_size": None, "test_size": None}


def default_gan_config(architecture="dcgan", latent_dim=100, hidden=(256, 256), channels=64, norm=None,
                       loss="nonsaturating"):
    """A complete GAN run configuration: ``{"kind": "gan", "model", "discriminator", "data", "train"}``.

    ``norm`` None picks the discriminator's normalisation: none for WGAN-GP (its per-example
    gradient penalty forbids batch norm), else the architecture's default.
    """
    if loss not in GAN_LOSSES:
        raise DataError(f"loss must be one of {sorted(GAN_LOSSES)}, got {loss!r}")
    if architecture not in ARCHITECTURES:
        raise DataError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if norm is None:
        norm = "none" if loss == "wgan-gp" or architecture == "mlp" else "batch"
    if norm not in NORMS:
        raise DataError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss == "wgan-gp" and norm == "batch":
        raise DataError("WGAN-GP's gradient penalty is per example, which batch norm in the discriminator "
                        "breaks; use norm 'none' or 'spectral'")
    model = Generator(latent_dim, architecture=architecture, hidden=tuple(hidden), channels=channels).config
    return {
        "kind": "gan", "model": model,
        "discriminator": {"architecture": architecture, "hidden": list(hidden), "channels": channels, "norm": norm},
        "data": dict(DEFAULT_GAN_DATA), "train": dict(DEFAULT_GAN_TRAIN, loss=loss),
    }  # fmt: skip


def conditional_gan_config(config, num_classes=10):
    """The class-conditional version of a GAN configuration: a :class:`~pyrogen.models.gan.ConditionalGenerator`
    (``"model"`` gains ``num_classes``) and a :class:`~pyrogen.models.gan.ProjectionDiscriminator` on an MLP
    of the discriminator's ``hidden`` widths (norm ``"spectral"`` or ``"none"``; batch norm becomes none)."""
    m, d = config["model"], config["discriminator"]
    model = ConditionalGenerator(num_classes, m["latent_dim"], tuple(m["image_shape"]), m["architecture"],
                                 tuple(m["hidden"]), m["channels"],
                                 projection_norm=m.get("projection_norm", "feature")).config
    norm = "none" if d["norm"] == "batch" else d["norm"]
    return {**config, "model": model, "discriminator": {**d, "architecture": "projection", "norm": norm}}


def default_cvae_config(num_classes=10, latent_dim=20, hidden=(400,), likelihood="bernoulli"):
    """A conditional VAE run (kind ``"cvae"``, :class:`~pyrogen.models.ConditionalVAE`): the VAE's
    data, training and evaluation settings (constant KL weight, no importance-sampled log p(x))."""
    from pyrogen.models.conditional import ConditionalVAE

    config = default_config("vae", likelihood=likelihood)
    config["kind"] = "cvae"
    config["model"] = ConditionalVAE(num_classes, latent_dim, hidden=tuple(hidden), likelihood=likelihood).config
    config["eval"]["num_samples"] = 0
    return config


DEFAULT_ALI_TRAIN = {
    "epochs": 10, "batch_size": 100, "loss": "nonsaturating", "gp_weight": 10.0, "d_steps": 1,
    "lr_g": 1e-4, "lr_d": 1e-4, "betas": [0.5, 0.999], "model_x": "mean", "seed": 0, "log_every": 20,
    "num_fixed": 64, "probe_size": 2000, "divergence_threshold": 1e4, "collapse_threshold": 0.5,
    "overpower_accuracy": 0.98,
}  # fmt: skip
"""Training settings of ALI / BiGAN runs (``pyrogen train ali``); ``probe_size`` training and test
images feed the linear probe of the codes after every epoch (0 turns it off). Adam at 1e-4 with
betas (0.5, 0.999) for both players and batch 100 are ALI's (Dumoulin et al. 2017; their Blocks
``Adam(learning_rate=1e-4, beta1=0.5)``, whose default ``beta2=0.001`` is Blocks' 1 - 0.999); runs made
before this default was measured (``benchmarks/ali_quality.py``) stored their 2e-4 and keep it.
:func:`default_ali_config` adds ``"update"`` (``"simultaneous"``, ALI's algorithm, or ``"alternating"``,
which runs made before the key existed keep), passed to :class:`~pyrogen.infer.AdversarialInference`."""

DEFAULT_AAE_TRAIN = {
    "epochs": 10, "batch_size": 100, "lr": 1e-3, "lr_d": 2e-4, "betas": [0.5, 0.999], "loss": "nonsaturating",
    "gp_weight": 10.0, "adversarial_weight": 1.0, "d_steps": 1, "seed": 0, "log_every": 20, "num_fixed": 64,
    "probe_size": 2000, "divergence_threshold": 1e4, "collapse_threshold": 0.5, "overpower_accuracy": 0.98,
}  # fmt: skip
"""Training settings of adversarial-autoencoder runs (``pyrogen train aae``): ``lr`` is the
autoencoder's Adam, ``lr_d`` and ``betas`` the code discriminator's."""


def _adversarial_pair_config(kind, train, loss, model):
    if loss not in GAN_LOSSES:
        raise DataError(f"loss must be one of {sorted(GAN_LOSSES)}, got {loss!r}")
    config = default_config("vae", **model)
    config["kind"] = kind
    config["train"] = dict(train, loss=loss)
    return config


ALI_NETWORK = {"layout": "ali", "slope": 0.01, "init_std": 0.01, "decoder_activation": "leaky", "centre_input": False}
"""The ``"dcgan"`` pair's options (:data:`pyrogen.networks.DCGAN_OPTIONS`) that make it the encoder and
generator of ALI's convolutional experiments (Dumoulin et al. 2017, appendix A; their
``experiments/ali_svhn.py``) at 28x28: convolutions with batch norm down to a 1x1 map and back, leaky
ReLU(0.01) (Blocks' ``LeakyRectifier``), weights N(0, 0.01), batch-norm scales 1, images fed as they are."""

ALI_DISCRIMINATOR = {"x_hidden": [256], "z_hidden": [256, 256], "joint_hidden": [512, 512], "slope": 0.01,
                     "init_std": 0.01}
"""ALI's joint discriminator at 28x28 with the :data:`ALI_NETWORK` pair: D_x two stride-2 convolutions
and a (7x7) layer of 256 units, D_z two layers of 256, D_xz two layers of 512 and the score; leaky
ReLU(0.01) and weights N(0, 0.01), as the encoder's."""


def default_ali_config(latent_dim=64, architecture="dcgan", hidden=(256,), likelihood="bernoulli-relaxed",
                       prior="normal", posterior="normal", loss="nonsaturating", model_x="mean",
                       disc_hidden=None, disc_architecture=None, disc_dropout=0.2, update="simultaneous"):
    """An ALI / BiGAN run: the VAE pair of :func:`default_config` as generator and encoder, and a
    :class:`~pyrogen.models.gan.JointDiscriminator` (``"discriminator"``: widths of the linear layers on x,
    on z and joint, the architecture on x, its first convolution's channels, the dropout).

    The generator is the decoder's mean (``model_x="mean"``), so the likelihood only names its output
    function: ``"bernoulli-relaxed"``, grey levels in [0, 1] and mean :math:`\\sigma(\\text{logits})`, is
    ALI's sigmoid output. The continuous Bernoulli's mean (an earlier default) cannot go below 0.063
    (:math:`\\lambda / (2\\lambda - 1) + 1 / (2 \\operatorname{artanh}(1 - 2\\lambda))`, about
    :math:`1 / |\\text{logit}|` for dark pixels, with torch's :math:`\\lambda` clamped at float32's eps), so its
    images never reach Fashion-MNIST's black background, which alone tells them from data.

    The defaults are ALI's convolutional recipe (Dumoulin et al. 2017, appendix A) at 28x28, the
    networks and update of ``benchmarks/ali_quality.py``'s hand-written reference, which
    ``check_same_networks`` there shows pyrogen builds exactly: with ``architecture="dcgan"`` the pair
    takes :data:`ALI_NETWORK` and the normal encoder outputs its log-scale (``scale_head="log-scale"``,
    :math:`\\sigma = \\exp(a)`); the discriminator has a convolutional x branch (``disc_architecture``:
    None for the pair's, ``"dcgan"`` for the ``"dcgan"`` and ``"conv"`` pairs, else ``"mlp"``), the widths
    and initialisation of :data:`ALI_DISCRIMINATOR`, dropout 0.2 before every layer of every branch and
    no batch norm; ``update="simultaneous"`` is ALI's algorithm (both players' gradients from one scoring
    of the pairs). With a logit output (``bernoulli-relaxed``, ``bernoulli``)
    ``train["init_output_bias"]`` starts the decoder's output bias at the log-odds of the training
    images' mean pixel, as ALI does (:func:`pyrogen.training.ali.init_output_bias_`).

    ``disc_hidden`` (a tuple of widths) sets all three branches' widths alike; None (the default) is
    :data:`ALI_DISCRIMINATOR`'s for the dcgan pair, else 256 256. Runs made before a default was changed
    stored their settings and keep them (docs/adversarial_inference.rst has the history and figures).

    ``model_x`` is ``"mean"`` (the decoder's mean, BiGAN's deterministic generator; any likelihood)
    or ``"sample"`` (a reparameterized draw of the likelihood). ``update`` is ``"simultaneous"`` or
    ``"alternating"`` (:class:`~pyrogen.infer.AdversarialInference`).
    """
    if model_x not in ("sample", "mean"):
        raise DataError(f"model_x must be 'sample' or 'mean', got {model_x!r}")
    if update not in ("simultaneous", "alternating"):
        raise DataError(f"update must be 'simultaneous' or 'alternating', got {update!r}")
    train = dict(DEFAULT_ALI_TRAIN, model_x=model_x, update=update)
    if likelihood in ("bernoulli", "bernoulli-relaxed"):  # logit outputs: ALI's data-dependent output bias
        train["init_output_bias"] = True
    recipe = architecture == "dcgan"
    model = dict(latent_dim=latent_dim, architecture=architecture, hidden=tuple(hidden), likelihood=likelihood,
                 prior=prior, posterior=posterior)
    if recipe:
        model["network"] = dict(ALI_NETWORK)
        if posterior == "normal":
            model["scale_head"] = "log-scale"  # ALI's encoder outputs mu and log sigma
    config = _adversarial_pair_config("ali", train, loss, model)
    if disc_architecture is None:
        disc_architecture = "dcgan" if architecture in ("dcgan", "conv") else "mlp"
    if disc_architecture not in ARCHITECTURES:
        raise DataError(f"disc_architecture must be one of {ARCHITECTURES}, got {disc_architecture!r}")
    if isinstance(disc_dropout, bool) or not isinstance(disc_dropout, (int, float)) or not 0 <= disc_dropout < 1:
        raise DataError(f"disc_dropout must be a probability in [0, 1), got {disc_dropout!r}")
    d = {"norm": "none", "architecture": disc_architecture, "channels": 32, "dropout": float(disc_dropout)}
    if disc_hidden is None and recipe and disc_architecture == "dcgan":
        widths = {k: ALI_DISCRIMINATOR[k] for k in ("x_hidden", "z_hidden", "joint_hidden")}
    else:
        width = (256, 256) if disc_hidden is None else disc_hidden
        widths = dict.fromkeys(("x_hidden", "z_hidden", "joint_hidden"), width)
    d.update({k: list(v) for k, v in widths.items()})  # a list of its own for each branch
    if recipe:  # ALI's slope and initialisation, whatever the widths
        d.update(slope=ALI_DISCRIMINATOR["slope"], init_std=ALI_DISCRIMINATOR["init_std"])
    config["discriminator"] = d
    config["eval"]["num_samples"] = 0  # a decoder mean has no density: no importance-sampled log p(x)
    return config


def default_aae_config(latent_dim=8, architecture="mlp", hidden=(400,), likelihood="bernoulli", prior="normal",
                       posterior="normal", loss="nonsaturating", adversarial_weight=1.0, disc_hidden=(256, 256)):
    """An adversarial-autoencoder run: the VAE pair of :func:`default_config` and a
    :class:`~pyrogen.models.gan.LatentDiscriminator` on codes (``"discriminator": {"hidden"}``)."""
    if not adversarial_weight >= 0:
        raise DataError(f"adversarial_weight must be >= 0, got {adversarial_weight!r}")
    config = _adversarial_pair_config(
        "aae", dict(DEFAULT_AAE_TRAIN, adversarial_weight=float(adversarial_weight)), loss,
        dict(latent_dim=latent_dim, architecture=architecture, hidden=tuple(hidden), likelihood=likelihood,
             prior=prior, posterior=posterior))
    config["discriminator"] = {"hidden": list(disc_hidden)}
    return config
