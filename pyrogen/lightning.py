"""Lightning: train any model/guide pair and ELBO with Lightning's ``Trainer`` (``pip install 'pyrogen[lightning]'``).

:class:`SVIModule` is a :class:`lightning.pytorch.LightningModule` whose loss is the
ELBO of a Pyro model/guide pair, as in Pyro's ``examples/svi_lightning.py``: the
ELBO as a torch module (:class:`~pyrogen.infer.torch_svi.ELBOModule`, whose forward
is the differentiable loss), parameters held by the modules themselves
(``pyro.settings.set(module_local_params=True)``), a plain torch optimizer, and one
batch run first where the guide creates its parameters lazily. Lightning's ``Trainer``
then brings its accelerators and strategies (several GPUs, several machines), its
loggers (TensorBoard, CSV, W&B, MLflow, ...) and its precision settings
(``precision="bf16-mixed"``).

It logs pyrogen's figures, in nats per example: ``train_elbo`` (the training
batches' ELBO, averaged over the epoch and the processes) and, when the
``Trainer`` validates, ``val_elbo`` and the collapse diagnostics ``val_kl``,
``val_mi`` and ``val_active_units``
(:func:`~pyrogen.evaluation.diagnostics.collapse_diagnostics`, He et al. 2019)
of the validation data gathered from every process.

Under DDP each process computes the loss of its share of the global batch. With
pyrogen's models, whose data plate is the batch (``pyro.plate("data", B)``), the
share's loss is multiplied by the number of processes (``sum_over_ranks=True``),
so that DDP's average of the gradients is the gradient of the global batch's
summed loss: the step of one process on the whole batch. A model that gives its
plate the full data size (``pyro.plate("data", N, subsample_size=B)``, Pyro's
``svi_lightning`` convention) is scaled already: give ``sum_over_ranks=False``.

::

    import lightning.pytorch as pl
    from pyrogen.lightning import SVIModule
    from pyrogen.models import VAE

    vae = VAE(latent_dim=50)
    module = SVIModule(vae.model, vae.guide, lr=1e-3)
    trainer = pl.Trainer(max_epochs=10, accelerator="auto", devices="auto", precision="bf16-mixed")
    trainer.fit(module, train_loader, val_loader)     # loaders of images, or of (images, labels)
"""

import pyro
import torch
from torch import nn

from pyrogen.evaluation import evaluate_dataset
from pyrogen.evaluation.diagnostics import collapse_diagnostics
from pyrogen.infer import ReparamTrace_ELBO
from pyrogen.infer.torch_svi import ELBOModule, compile_choice, compiled

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError(
        "pyrogen.lightning needs Lightning, which is not installed: pip install 'pyrogen[lightning]'"
    ) from None

__all__ = ["SVIModule"]


def _owner(fn):
    """The ``nn.Module`` a model or guide belongs to: itself (an AutoGuide) or its bound method's object."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


_PLAIN = (str, int, float, bool, type(None))


class _EpochLoss:
    """This process's training loss: of the last step, and summed over the epoch so far (detached, nats)."""

    __slots__ = ("last", "total", "count")

    def __init__(self):
        self.last, self.total, self.count = None, None, 0


def _images(batch):
    """The examples of a batch: the batch itself, or the first element of ``(images, labels, ...)``."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


class SVIModule(pl.LightningModule):
    """A LightningModule that trains ``model``/``guide`` by maximising ``elbo``, with a torch optimizer.

    :param model: a Pyro model taking a batch ``x`` (e.g. ``vae.model``).
    :param guide: its guide (``vae.guide``, or an AutoGuide).
    :param elbo: an ELBO with ``differentiable_loss`` (pyrogen's or Pyro's: ``Trace_ELBO()``,
        ``TraceMeanField_ELBO()``, ...); default :class:`~pyrogen.infer.ReparamTrace_ELBO`.
    :param float lr: the learning rate.
    :param optimizer: a ``torch.optim`` class, called with the parameters and ``lr`` (default Adam).
    :param modules: the ``nn.Module``\\ s that hold the parameters (default: those of ``model`` and ``guide``).
    :param example: a batch to run once at construction, so that a guide that creates its
        parameters lazily (an AutoGuide) has them before the optimizer is built.
    :param bool sum_over_ranks: multiply each process's loss by the number of processes (see the module
        docs); False for a model whose plate carries the full data size.
    :param str site: the latent site of the validation diagnostics (None: no diagnostics, ELBO only).
    :param str compile: how the training loss runs, as in :class:`~pyrogen.infer.TorchSVI`: ``"off"`` (the
        model and guide's Python at every step), ``"record"`` (the step's tensor operations recorded once per
        batch shape and replayed, the same values and gradients bit for bit, with the recording's guard; see
        :ref:`recorded-models`) or ``"on"`` (recorded and compiled). Recording is of the full-precision step
        (``"32-true"`` or ``"64-true"``): with the ``Trainer``'s mixed precision, ``fit`` refuses it in one line.

    Building one sets Pyro's global ``module_local_params`` to True for the rest of the process, as
    Pyro's ``svi_lightning`` example does at its start: a ``PyroParam`` then lives in its module, where
    DDP and the optimizer see it, not in Pyro's global parameter store.
    """

    def __init__(
        self,
        model,
        guide,
        elbo=None,
        lr=1e-3,
        optimizer=torch.optim.Adam,
        modules=None,
        example=None,
        sum_over_ranks=True,
        site="z",
        compile="off",
    ):
        super().__init__()
        pyro.settings.set(module_local_params=True)  # parameters live in the modules, not the param store
        if modules is None:
            modules = list({id(m): m for m in map(_owner, (model, guide)) if m is not None}.values())
        self.elbo_module = ELBOModule(model, guide, elbo if elbo is not None else ReparamTrace_ELBO(), modules=modules)
        self.lr, self.optimizer_class, self.site = lr, optimizer, site
        self.compile = compile_choice(compile)
        # what a training step calls: the ELBO module itself, or its recording, which holds no parameters of
        # its own and stays out of the module tree (state_dict and checkpoints are the model and guide's)
        object.__setattr__(self, "_training_loss", compiled(self.elbo_module, self.compile))
        self.sum_over_ranks = sum_over_ranks
        self._loss = _EpochLoss()
        self._validation = []
        if example is not None:
            with torch.no_grad(), pyro.validation_enabled(False):
                self.elbo_module(_images(example))
        if not any(True for _ in self.parameters()):
            raise ValueError(
                "SVIModule found no parameters in the model and guide; a guide that creates them "
                "lazily (an AutoGuide) needs one batch first: pass example=<a batch>"
            )

    def __setattr__(self, name, value):
        """``nn.Module``'s, with a short way for a plain value (a str, a number, None) under a name the module
        holds as a plain attribute: Lightning sets ``_current_fx_name`` around each hook it calls, about 44
        times a step, and ``nn.Module``'s registration checks cost about 2 us each."""
        if type(value) in _PLAIN and name in self.__dict__:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def last_loss(self):
        """This process's loss of the last training step (its share of the batch, summed, nats), detached."""
        return self._loss.last

    def forward(self, x):
        """The loss (negative ELBO, nats, summed over the batch ``x``)."""
        return self.elbo_module(x)

    def configure_optimizers(self):
        return self.optimizer_class(self.parameters(), lr=self.lr)

    def on_fit_start(self):
        precision = str(self.trainer.precision)
        if self.compile != "off" and precision not in ("32-true", "64-true"):
            raise ValueError(
                f"SVIModule(compile={self.compile!r}) records the full-precision step; the Trainer's "
                f"precision={precision!r} runs it eagerly: give compile='off'"
            )

    def training_step(self, batch, batch_idx):
        x = _images(batch)
        with pyro.validation_enabled(False):
            loss = self._training_loss(x)
        # the epoch's ELBO is summed here and logged once, at the epoch's end: Lightning's self.log
        # costs about 1 ms a call on the CPU, as much as 15% of a small model's step
        record = self._loss
        record.last = loss.detach()
        if record.total is None:
            record.total = record.last.clone()
        else:
            record.total += record.last
        record.count += x.shape[0]
        world = self.trainer.world_size if self._trainer is not None else 1
        return loss * world if self.sum_over_ranks and world > 1 else loss

    def on_train_epoch_end(self):
        """``train_elbo``: the epoch's training ELBO per example, averaged over the processes."""
        record = self._loss
        if record.total is None:
            return
        elbo = -record.total / record.count
        record.total, record.count = None, 0
        self.log("train_elbo", elbo, sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._validation.append(_images(batch))

    def on_validation_epoch_end(self):
        """ELBO and collapse diagnostics of the validation data of every process (nats per example)."""
        if not self._validation:
            return
        data = torch.cat(self._validation)
        self._validation = []
        if self.trainer.world_size > 1:  # the aggregate posterior of MI needs every example in one place
            data = self.all_gather(data).flatten(0, 1)
        with pyro.validation_enabled(False):
            metrics = {"val_elbo": evaluate_dataset(self.elbo_module.model, self.elbo_module.guide, data)["elbo"]}
            if self.site is not None:
                diagnostics = collapse_diagnostics(self.elbo_module.model, self.elbo_module.guide, data, site=self.site)
                metrics.update(
                    {"val_" + k: float(v) for k, v in diagnostics.items() if k in ("kl", "mi", "active_units")}
                )
        for name, value in metrics.items():  # the same data and parameters on every process: the same values
            self.log(name, float(value), rank_zero_only=True)
