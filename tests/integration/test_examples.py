"""Every script in examples/ runs end to end at a tiny size and writes its figures;
``--help`` answers without importing torch and shows every option's help and default."""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import requires_fashion_mnist

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Command-line flags that shrink each example to seconds; every example must be listed here.
TINY = {
    "vae.py": ["--epochs", "1", "--num-train", "200", "--num-test", "50", "--num-samples", "10", "--hidden", "32"],
    "conditional_vae.py": ["--epochs", "1", "--num-train", "200", "--hidden", "32"],
    "custom_decoder.py": ["--epochs", "1", "--num-train", "200", "--num-test", "50"],
    "ddp_vae.py": ["--epochs", "1", "--num-train", "200", "--num-test", "50", "--batch-size", "50"],
    "semi_supervised.py": ["--epochs", "1", "--num-train", "300", "--num-labeled", "100", "--num-test", "100"],
    "own_data.py": ["--epochs", "1", "--num-train", "200", "--num-test", "50", "--latent-dim", "4"],
}
FIGURES = {
    "vae.py": ["vae_reconstructions.png", "vae_samples.png"],
    "conditional_vae.py": ["conditional_vae_samples.png"],
    "custom_decoder.py": ["custom_decoder_samples.png"],
    "ddp_vae.py": ["ddp_vae_samples.png"],
    "semi_supervised.py": ["semi_supervised.png"],
    "own_data.py": ["own_data_reconstructions.png", "own_data_samples.png"],
}
# What an example writes besides its figures: its own data and run directory.
OUTPUTS = {"own_data.py": ["run", "shapes.npz"]}

# What each example prints about the test set, in words and units.
EVALUATES = {
    "vae.py": r"test ELBO -\d+\.\d\d nats, log p\(x\) -\d+\.\d\d nats \(K = 10\), per image, on 50 test",
    "custom_decoder.py": r"test ELBO -\d+\.\d\d nats per image, on 50 test images",
    "ddp_vae.py": r"test ELBO -\d+\.\d\d nats per image, on 50 test images",
    "own_data.py": r"epoch 1: train ELBO -\d+\.\d\d, test ELBO -\d+\.\d\d nats per image",
}


def test_every_example_has_a_tiny_configuration():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(TINY) == sorted(FIGURES)


@requires_fashion_mnist
@pytest.mark.parametrize("name", sorted(TINY))
def test_example_runs(name, tmp_path, monkeypatch, one_thread, capsys):
    monkeypatch.setattr(sys, "argv", [name, *TINY[name], "--out", str(tmp_path)])
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # torch is loaded in this process already, so the example's set_wait_policy() could not act: given
    # the variable, it keeps it quietly (a fresh "python examples/NAME.py" sets it before torch loads)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    printed = capsys.readouterr().out
    assert "epoch 1:" in printed
    assert "{" not in printed, "print what a reader wants to see, not a raw dict:\n" + printed
    if name in EVALUATES:
        assert re.search(EVALUATES[name], printed), printed
    for figure in FIGURES[name]:
        data = (tmp_path / figure).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), figure
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FIGURES[name] + OUTPUTS.get(name, []))


# Run in a fresh interpreter: reports whether --help imported torch, then the help text.
HELP = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    assert exit.code == 0, exit.code
print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.parametrize("name", sorted(TINY))
def test_example_help_is_quick_and_complete(name):
    done = subprocess.run(
        [sys.executable, "-c", HELP, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.rstrip().endswith("torch imported: False"), "parse the arguments before importing torch"
    help_text = done.stdout.partition("options:")[2]
    # Every option but --help: its own line of help, ending with its default.
    options = re.split(r"\n  (?=-)", help_text.strip())[1:]
    assert {"--epochs", "--num-train", "--threads", "--out"} <= {o.split()[0] for o in options}
    for option in options:
        flag, _, explanation = option.partition(" ")
        assert "(default: " in " ".join(option.split()), f"{name} {flag}: no default shown"
        assert not re.search(r"\bunused\b", explanation), f"{name} {flag}: an option that does nothing"
