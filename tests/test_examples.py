"""Every script in examples/ runs end to end at a tiny size and writes its figures."""

import runpy
import sys
from pathlib import Path

import pytest

from tests.conftest import requires_fashion_mnist

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Command-line flags that shrink each example to seconds; every example must be listed here.
TINY = {
    "vae.py": ["--epochs", "1", "--num-train", "200", "--num-test", "50", "--num-samples", "10",
               "--hidden", "32"],
    "conditional_vae.py": ["--epochs", "1", "--num-train", "200", "--hidden", "32"],
    "custom_decoder.py": ["--epochs", "1", "--num-train", "200", "--num-test", "50"],
    "ddp_vae.py": ["--epochs", "1", "--num-train", "200", "--num-test", "50", "--batch-size", "50"],
    "semi_supervised.py": ["--epochs", "1", "--num-train", "300", "--num-labeled", "100",
                           "--num-test", "100"],
}
FIGURES = {
    "vae.py": ["vae_reconstructions.png", "vae_samples.png"],
    "conditional_vae.py": ["conditional_vae_samples.png"],
    "custom_decoder.py": ["custom_decoder_samples.png"],
    "ddp_vae.py": [],
    "semi_supervised.py": ["semi_supervised.png"],
}


def test_every_example_has_a_tiny_configuration():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(TINY) == sorted(FIGURES)


@requires_fashion_mnist
@pytest.mark.parametrize("name", sorted(TINY))
def test_example_runs(name, tmp_path, monkeypatch, one_thread, capsys):
    monkeypatch.setattr(sys, "argv", [name, *TINY[name], "--out", str(tmp_path)])
    monkeypatch.setenv("MPLBACKEND", "Agg")
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    printed = capsys.readouterr().out
    assert "epoch 1:" in printed
    for figure in FIGURES[name]:
        data = (tmp_path / figure).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), figure
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FIGURES[name])
