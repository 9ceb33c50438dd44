"""What the fault suites share: a tiny run's options, a run's files as bytes, the one error line, a GAN run."""

import os

import torch

from pyrogen.cli import main

TINY = [
    "--train-size",
    "200",
    "--test-size",
    "40",
    "--latent-dim",
    "4",
    "--hidden",
    "16",
    "--no-progress",
    "--eval-samples",
    "0",
    "--device",
    "cpu",
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def snapshot(path):
    """Every file under ``path`` with its bytes; links as their targets."""
    out = {}
    for d, dirs, names in os.walk(path):
        for n in names + [d_ for d_ in dirs if os.path.islink(os.path.join(d, d_))]:
            p = os.path.join(d, n)
            if os.path.islink(p):
                out[os.path.relpath(p, path)] = "-> " + os.readlink(p)
            else:
                with open(p, "rb") as f:
                    out[os.path.relpath(p, path)] = f.read()
    return out


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyrogen: error: "), err
    return lines[0]


def train_gan_run(tmp_path_factory, folder):
    """A finished one-epoch MLP GAN run in a new folder ``folder`` (the tests copy it to change it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = str(tmp_path_factory.mktemp(folder) / "gan")
    assert (
        main(
            [
                "train",
                "gan",
                "--out",
                out,
                "--epochs",
                "1",
                "--architecture",
                "mlp",
                "--hidden",
                "16",
                "--latent-dim",
                "4",
                "--train-size",
                "128",
                "--test-size",
                "64",
                "--batch-size",
                "64",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    torch.set_num_threads(threads)
    return out
