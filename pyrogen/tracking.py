"""Experiment tracking: each epoch's metrics and image grids to TensorBoard.

The fit loop (:class:`~pyrogen.training.FitLoop`) tells every tracker in its
``trackers`` list the epoch's metrics row (the row ``metrics.csv`` gets) and the
trainer's image grids (:meth:`~pyrogen.training.FitLoop.epoch_images`), on rank 0,
after the row is written::

    from pyrogen.tracking import TensorBoardTracker
    trainer.trackers.append(TensorBoardTracker("runs/vae/tensorboard"))
    trainer.fit()
    trainer.trackers[0].close()

``pyrogen train ... --logger tensorboard`` does this with ``RUN_DIR/tensorboard``;
``tensorboard --logdir runs`` shows every run. A scalar is written for each
numeric column of the row (its name as the tag: ``train_elbo``, ``test_elbo``,
``kl``, ``mi``, ``active_units``, the GAN's ``loss_d``, ``loss_g``, ``d_real``,
``d_fake``, ``diversity``, ...) at the epoch as TensorBoard's step. TensorBoard
keeps scalars in float32.
"""

import math
import numbers

from pyrogen.errors import DataError

TENSORBOARD_MISSING = (
    "--logger tensorboard needs the tensorboard package, which is not installed: pip install 'pyrogen[tensorboard]'"
)


class TensorBoardTracker:
    """Writes each epoch's numeric metrics as scalars and its image grids as images to ``log_dir``.

    :param str log_dir: the directory of the event files, created at the first epoch's end (so that a run
        stopped in its first epoch leaves nothing behind); a resumed run adds a new file beside the others.
    :param int nrow: images per row of a grid.
    :raises DataError: if the ``tensorboard`` package is not installed (one line saying how to install it).
    """

    def __init__(self, log_dir, nrow=8):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer imports tensorboard's protobufs
            raise DataError(TENSORBOARD_MISSING) from None
        self.log_dir, self.nrow = str(log_dir), nrow
        self._writer_class, self._writer = SummaryWriter, None

    @property
    def writer(self):
        """The :class:`torch.utils.tensorboard.SummaryWriter`, made on first use."""
        if self._writer is None:
            self._writer = self._writer_class(self.log_dir)
        return self._writer

    def log_epoch(self, epoch, row, images=None):
        """Write ``row``'s finite numeric values (all but ``epoch``) and ``images`` at step ``epoch``.

        :param int epoch: the epoch just finished (1, 2, ...).
        :param dict row: the epoch's metrics row.
        :param dict images: ``{tag: tensor (N, C, H, W) in [0, 1]}``, each written as one grid.
        """
        for name, value in row.items():
            if name == "epoch" or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(name, float(value), global_step=epoch)
        for name, grid in (images or {}).items():
            from torchvision.utils import make_grid

            self.writer.add_image(
                name, make_grid(grid.detach().float().cpu().clamp(0, 1), nrow=self.nrow), global_step=epoch
            )
        self.writer.flush()

    def close(self):
        """Flush and close the event file (nothing if none was written)."""
        if self._writer is not None:
            self._writer.close()
