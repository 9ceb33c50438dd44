"""Progress of evaluations: the bar counts every example, and a long evaluation says how long it will take."""

import re
import time

import pytest
import torch

from pyrogen.evaluation import evaluate_dataset
from pyrogen.evaluation.diagnostics import collapse_diagnostics
from pyrogen.evaluation.progress import EvaluationProgress, format_duration
from pyrogen.models import VAE


def test_the_estimate_after_the_first_update_is_said_when_long(capsys):
    with EvaluationProgress(1000, "log p(x), K = 1000", enabled=True, announce_after=0.5) as bar:
        time.sleep(0.05)
        bar.update(10)  # 10 of 1,000 in 0.05 s: about 5 s in all
        bar.update(990)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "about" in line]
    assert len(lines) == 1
    match = re.fullmatch(
        r"log p\(x\), K = 1000: about (\d+) s for 1,000 images \(the first 10 took (\d\.\d) s\)", lines[0].strip()
    )
    assert match, lines[0]
    assert 4 <= int(match[1]) <= 60  # 100 x the first update's time (a sleep of 0.05 s, plus scheduling)
    assert bar.done == 1000


def test_a_short_evaluation_or_a_disabled_one_says_nothing(capsys):
    with EvaluationProgress(100, "ELBO", enabled=True) as bar:
        bar.update(50)
        bar.update(50)
    with EvaluationProgress(100, "ELBO", enabled=False, announce_after=0.0) as bar:
        bar.update(1)
    assert "about" not in capsys.readouterr().err


@pytest.mark.parametrize("seconds, text", [(42.4, "42 s"), (210, "3.5 min"), (7200, "2.0 h")])
def test_durations(seconds, text):
    assert format_duration(seconds) == text


def test_progress_changes_no_figure():
    """The bar is only shown: the same seed gives the same ELBO and diagnostics with or without it."""
    vae = VAE(latent_dim=3, hidden=(16,))
    data = (torch.rand(120, 1, 28, 28) > 0.5).float()
    results = []
    for progress in (False, True):
        torch.manual_seed(1)
        results.append(
            (
                evaluate_dataset(vae.model, vae.guide, data, batch_size=50, num_samples=3, progress=progress),
                collapse_diagnostics(vae.model, vae.guide, data, batch_size=50, progress=progress),
            )
        )
    assert results[0] == results[1]
