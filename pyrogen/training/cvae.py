"""The conditional VAE trainer (``pyrogen train vae --conditional``) on :class:`~pyrogen.training.loop.FitLoop`.

:class:`~pyrogen.models.ConditionalVAE` takes the label as an observed input of
both programs; the trainer runs SVI on labelled minibatches ``svi.step(x, y=y)``
(AEVB, as :class:`~pyrogen.training.VAETrainer`), reports the test ELBO given the
test labels after every epoch, and writes ``samples.png`` with one row per class
(decoded prior draws, the same noise in every row) and ``reconstructions.png``.
With the sample-quality classifier cached (``pyrogen train features``), each row
adds ``conditional_accuracy``: the share of those samples that the classifier
assigns to the class they were generated for. Run kind ``"cvae"``; single process.
"""

import pyro
import torch
from tqdm.auto import tqdm

from pyrogen.data import DeviceLoader, check_images
from pyrogen.data.loaders import check_example_shape
from pyrogen.errors import DataError
from pyrogen.evaluation import elbo as elbo_per_example
from pyrogen.evaluation.sample_quality import conditional_accuracy
from pyrogen.infer import TorchSVI
from pyrogen.models.registry import build_model
from pyrogen.random_streams import stream_seed
from pyrogen.rundirs import load_labelled_data, resolve_device, resume_trainer
from pyrogen.settings import migrate
from pyrogen.training.game import load_class_classifier
from pyrogen.training.loop import FitLoop
from pyrogen.training.vae import ELBOS, elbo_postfix, svi_diverged

PER_CLASS = 8
"""Samples per class (grid columns) in ``samples.png``."""


class CVAETrainer(FitLoop):
    """Fits a :class:`~pyrogen.models.ConditionalVAE` by SVI on labelled minibatches.

    :param cvae: the model (``model(x, y)``, ``guide(x, y)``).
    :param torch.Tensor train_data: training images in [0, 1].
    :param torch.Tensor train_labels: their labels ``(N,)``.
    :param torch.Tensor test_data: test images (binarized already if the configuration binarizes).
    :param torch.Tensor test_labels: their labels.
    :param dict config: a ``"cvae"`` run configuration of any layout (or its :class:`~pyrogen.settings.RunConfig`),
        read through :func:`~pyrogen.settings.migrate` (:attr:`settings`, frozen).
    """

    read_settings = staticmethod(migrate)

    def __init__(self, cvae, train_data, train_labels, test_data, test_labels, config, run=None, progress=True):
        super().__init__(config=config, run=run, progress=progress)
        if self.world_size > 1:
            raise DataError("the conditional VAE trains in a single process; run it without torchrun")
        check_images(train_data, "training data")
        check_images(test_data, "test data")
        if train_labels is None or test_labels is None:
            raise DataError("--conditional needs labelled data, and these data have no labels")
        cfg = self.settings.train
        self.cvae, self.test_data, self.test_labels = cvae, test_data, test_labels
        self.loader = DeviceLoader(
            train_data,
            cfg.batch_size,
            binarize=self.settings.data.binarize,
            seed=stream_seed("data_order", cfg.seed),
            device=train_data.device,
            labels=train_labels,
        )
        check_example_shape(train_data.shape[1:], cvae.image_shape, "training data")
        check_example_shape(test_data.shape[1:], cvae.image_shape, "test data")
        cvae.likelihood.check_binarize(self.settings.data.binarize)
        cvae.likelihood.check(test_data, "test data")
        lr = 1e-3 if cfg.lr is None else cfg.lr  # None: the recipe's default (Adam, 1e-3)
        self.optim = self.make_optimizer(cvae.parameters(), lr)
        # Normal prior and guide: "auto" is the analytic KL, as for an unconditional VAE of those families
        elbo = "meanfield" if cfg.elbo == "auto" else cfg.elbo
        if elbo not in ("trace", "meanfield"):
            raise DataError(f"the conditional VAE trains with --elbo auto, trace or meanfield, got {elbo!r}")
        self.svi = TorchSVI(
            cvae.model,
            cvae.guide,
            self.optim,
            ELBOS[elbo](num_particles=cfg.num_particles),
            precision=self.precision if self.precision.enabled else None,
        )
        k = cvae.num_classes
        self.sample_labels = torch.arange(k, device=train_data.device).repeat_interleave(PER_CLASS)
        with torch.random.fork_rng(devices=[train_data.device] if train_data.device.type == "cuda" else []):
            torch.manual_seed(stream_seed("fixed_noise", cfg.seed))  # the same PER_CLASS draws of z in every row
            self.sample_noise = cvae.prior().sample((PER_CLASS,)).repeat(k, 1)
        self.classifier = None

    def state_dict(self):
        return {**super().state_dict(), "model": self.cvae.state_dict(), "optim": self.optim.state_dict()}

    def load_state_dict(self, state):
        self.cvae.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        super().load_state_dict(state)

    def diverged(self, where, what):
        return svi_diverged(self, where, what)

    handles_precision = True  # TorchSVI applies it (autocast forward, gradient scaler under fp16)

    def train_step(self, batch):
        x, y = batch
        return self.svi.step(x, y=y)

    def step_weight(self, batch):
        return batch[0].shape[0]

    postfix = staticmethod(elbo_postfix)

    def parameters(self):
        return self.cvae.parameters()

    def on_fit_start(self):
        if self.classifier is None:
            self.classifier = load_class_classifier(self.settings.data, self.test_data.device, "conditional accuracy")

    @torch.no_grad()
    def evaluate(self, num_samples=0):
        """Test ELBO given the test labels, nats per example (``num_samples`` must be 0)."""
        if num_samples:
            raise DataError("the conditional VAE reports the test ELBO only; use --eval-samples 0")
        bs, total = self.settings.eval.batch_size, 0.0
        self.cvae.eval()
        try:
            with pyro.validation_enabled(False):
                for i in range(0, self.test_data.shape[0], bs):
                    total += (
                        elbo_per_example(
                            self.cvae.model, self.cvae.guide, self.test_data[i : i + bs], y=self.test_labels[i : i + bs]
                        )
                        .sum()
                        .item()
                    )
        finally:
            self.cvae.train()
        return {"elbo": total / self.test_data.shape[0]}

    @torch.no_grad()
    def samples(self):
        """Mean images of the fixed draws, one row of :data:`PER_CLASS` per class."""
        return self.cvae.decode(self.sample_noise, self.sample_labels)

    def epoch_report(self, stats, seconds):
        test = self.evaluate()
        row = {"epoch": self.epoch, "step": self.step, "train_elbo": -stats["loss"], "test_elbo": test["elbo"]}
        self._images = self.samples()
        if self.classifier is not None:
            pred = self.classifier(self._images).argmax(-1)
            row["conditional_accuracy"] = conditional_accuracy(pred, self.sample_labels)
        row["seconds"] = seconds
        if self.progress:
            tqdm.write(
                f"epoch {self.epoch}: train ELBO {row['train_elbo']:.2f}, test ELBO {row['test_elbo']:.2f}"
                + (f", conditional accuracy {row['conditional_accuracy']:.3f}" if "conditional_accuracy" in row else "")
                + f" ({seconds:.1f} s)"
            )
        return row

    def write_epoch_files(self, row):
        self.run.save_image("samples.png", self._images, nrow=PER_CLASS)

    def epoch_images(self):
        """The epoch's samples, one row per class, for the trackers."""
        return {"samples": self._images} if getattr(self, "_images", None) is not None else {}

    def write_pictures(self, num=64):
        """``samples.png`` (one row per class) and ``reconstructions.png`` (inputs above, reconstructions below)."""
        if self.run is None:
            return []
        self.cvae.eval()
        with torch.no_grad(), pyro.validation_enabled(False):
            x, y = self.test_data[: num // 2], self.test_labels[: num // 2]
            z = self.cvae.guide(x, y)
            recon = self.cvae.decode(z, y).reshape(x.shape)
        self.cvae.train()
        return [
            self.run.save_image("samples.png", self.samples(), nrow=PER_CLASS),
            self.run.save_image("reconstructions.png", torch.cat([x, recon])),
        ]


def build_cvae_trainer(config, run=None, device="auto", progress=True, data=None):
    """A :class:`CVAETrainer` for a ``"cvae"`` configuration, freshly seeded.

    :param data: optional ``(train, train_labels, test, test_labels)`` instead of loading ``config["data"]``.
    """
    device = resolve_device(device)
    settings = migrate(config)
    pyro.set_rng_seed(stream_seed("init", settings.train.seed))
    cvae = build_model(config).to(device)
    if data is None:
        train, train_y, test, test_y = load_labelled_data(settings.data, device)
    else:
        train, train_y, test, test_y = (None if d is None else d.to(device) for d in data)
    return CVAETrainer(cvae, train, train_y, test, test_y, config, run=run, progress=progress)


def resume_cvae_trainer(run_dir, device="auto", progress=True, data=None):
    """Rebuild a conditional VAE run's trainer from its directory and load its last checkpoint."""
    return resume_trainer(run_dir, device, progress, build=build_cvae_trainer, data=data)
