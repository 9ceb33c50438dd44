"""Helper of tests/test_lightning.py (not a test): train pyrogen.lightning.SVIModule under Lightning's DDP.

Run by ``torchrun --nproc-per-node 2 tests/lightning_ddp_run.py OUT.json [COMPILE]`` (gloo, CPU; COMPILE is
SVIModule's ``compile``, default ``off``). Rank 0 writes
the global batch's loss of every step (the processes' losses summed) and the trained parameters'
checksum to OUT.json. The data, model and seeds are those of ``reference_losses`` in the test.
"""

import json
import os
import sys

import torch
import torch.distributed as dist


def data():
    g = torch.Generator().manual_seed(0)
    return (torch.rand(80, 1, 28, 28, generator=g) > 0.6).float()


def autoencoder():
    from pyrogen.models.autoencoder import Autoencoder

    torch.manual_seed(0)
    return Autoencoder(latent_dim=4, hidden=(16,))


GLOBAL_BATCH, EPOCHS, LR = 20, 2, 1e-2


def main(out, compile="off"):
    import lightning.pytorch as pl
    from lightning.pytorch.strategies import DDPStrategy
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from pyrogen.lightning import SVIModule

    torch.set_num_threads(1)
    ae = autoencoder()
    module = SVIModule(ae.model, ae.guide, lr=LR, site=None, compile=compile)
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = pl_module.last_loss.clone()
            dist.all_reduce(loss)  # the shares' losses summed: the global batch's loss
            losses.append(loss.item())

    world = int(os.environ["WORLD_SIZE"])
    dataset = TensorDataset(data())
    # the shares in order (Lightning's own sampler would shuffle the training data), so that the global
    # batches are the reference's: rank r takes examples r, r + 2, r + 4, ... of each run of 20
    sampler = DistributedSampler(dataset, num_replicas=world, rank=int(os.environ["RANK"]), shuffle=False)
    loader = DataLoader(dataset, batch_size=GLOBAL_BATCH // world, sampler=sampler)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=world,
        num_nodes=1,
        max_epochs=EPOCHS,
        strategy=DDPStrategy(process_group_backend="gloo", static_graph=True),
        use_distributed_sampler=False,
        callbacks=[Record()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, loader)
    if trainer.global_rank == 0:
        with open(out, "w") as f:
            json.dump(
                {
                    "losses": losses,
                    "world_size": trainer.world_size,
                    "train_elbo": float(trainer.callback_metrics["train_elbo"]),
                    "params": [p.detach().sum().item() for p in ae.parameters()],
                },
                f,
            )


if __name__ == "__main__":
    main(*sys.argv[1:])
