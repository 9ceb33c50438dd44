"""Sample quality: Fréchet distance, precision/recall and the cached feature network."""

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from pyrogen.errors import CheckpointError, DataError
from pyrogen.evaluation import evaluate_samples, features as F, frechet_distance, precision_recall
from pyrogen.evaluation.sample_quality import extract_features, frechet_distance_from_statistics, knn_radii
from tests.conftest import requires_fashion_mnist


def random_spd(d, rng):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# --- Fréchet distance ------------------------------------------------------------------------------


def test_frechet_distance_is_zero_for_identical_features():
    x = np.random.default_rng(0).standard_normal((500, 16)) * 3 + 1
    assert abs(frechet_distance(x, x)) < 1e-8 * np.trace(np.cov(x, rowvar=False))
    assert abs(frechet_distance(torch.from_numpy(x).float(), torch.from_numpy(x).float())) < 1e-4


def test_frechet_distance_matches_closed_form_for_two_gaussians():
    rng = np.random.default_rng(1)
    d = 6
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(d, rng), random_spd(d, rng)
    # closed form via the symmetric square root: tr((S1 S2)^{1/2}) = tr((S1^{1/2} S2 S1^{1/2})^{1/2})
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(inner))
    assert frechet_distance_from_statistics(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-9)
    # commuting (diagonal) covariances: |m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    diag = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance_from_statistics(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(diag, rel=1e-9)


def test_frechet_distance_of_gaussian_samples_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    d = 4
    m1, m2 = np.zeros(d), np.full(d, 0.5)
    s1, s2 = random_spd(d, rng), random_spd(d, rng)
    x = rng.multivariate_normal(m1, s1, size=20000)
    y = rng.multivariate_normal(m2, s2, size=20000)
    exact = frechet_distance_from_statistics(m1, s1, m2, s2)
    # sampling error of the plug-in estimate with 20,000 draws per set is a few 1e-3 here
    assert frechet_distance(x, y) == pytest.approx(exact, abs=0.03)


def test_frechet_distance_with_singular_covariances_is_finite():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal((50, 3)), np.zeros((50, 5))], axis=1)  # rank 3 of 8
    y = np.concatenate([rng.standard_normal((50, 3)) + 2, np.zeros((50, 5))], axis=1)
    fd = frechet_distance(x, y)
    expected = frechet_distance(x[:, :3], y[:, :3])  # the zero columns add nothing
    assert np.isfinite(fd) and fd == pytest.approx(expected, abs=1e-3)


def test_frechet_distance_bad_inputs():
    x = np.zeros((10, 3))
    with pytest.raises(
        DataError, match=r"real_features must be a 2-d array of feature vectors \(N, D\), got shape \(10,\)"
    ):
        frechet_distance(np.zeros(10), x)
    with pytest.raises(DataError, match="same width D, got 3 and 4"):
        frechet_distance(x, np.zeros((10, 4)))
    with pytest.raises(DataError, match="fake_features needs at least 2 feature vectors, got 1"):
        frechet_distance(x, np.zeros((1, 3)))
    with pytest.raises(DataError, match="fake_features holds NaN or infinite values"):
        frechet_distance(x, np.full((10, 3), np.nan))
    with pytest.raises(DataError, match="covariances"):
        frechet_distance_from_statistics(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


# --- precision and recall --------------------------------------------------------------------------


def test_knn_radii_on_a_line():
    x = torch.arange(10, dtype=torch.float64)[:, None]
    r = knn_radii(x, k=3)
    # point 0: neighbours at 1, 2, 3 -> 3; point 5: 4 and 6 at 1, 3 and 7 at 2 -> 2
    assert r.tolist() == [3, 2, 2, 2, 2, 2, 2, 2, 2, 3]


def test_precision_recall_identical_sets_are_one():
    x = np.random.default_rng(0).standard_normal((300, 8))
    assert precision_recall(x, x, k=3) == (1.0, 1.0)


def test_precision_recall_far_apart_sets_are_zero():
    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((200, 8)), rng.standard_normal((200, 8)) + 100.0
    assert precision_recall(real, fake, k=3) == (0.0, 0.0)


def test_precision_recall_half_covered():
    """Real data in two far-apart clusters, generated data in one of them: precision 1, recall 1/2."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 2))
    b = rng.standard_normal((200, 2)) + 50.0
    real = np.concatenate([a, b])
    # generated = exactly the real points of cluster a: exact values
    assert precision_recall(real, a, k=3) == (1.0, 0.5)
    # fresh draws from cluster a's distribution: nearly all realistic, half the data covered at most
    precision, recall = precision_recall(real, rng.standard_normal((200, 2)), k=3)
    assert precision > 0.9
    assert 0.4 < recall <= 0.5
    # roles swapped: the generated data cover both clusters, the real only one
    precision, recall = precision_recall(a, real, k=3)
    assert precision == 0.5 and recall == 1.0


def test_precision_recall_sees_mode_collapse():
    """All generated samples near one real point: realistic (high precision) but no variety (low recall)."""
    rng = np.random.default_rng(0)
    real = rng.standard_normal((500, 4))
    fake = real[0] + 1e-3 * rng.standard_normal((500, 4))
    precision, recall = precision_recall(real, fake, k=3)
    assert precision == 1.0
    assert recall < 0.02


def test_precision_recall_bad_inputs():
    x = np.zeros((10, 3))
    with pytest.raises(DataError, match="k must be a positive integer, got 0"):
        precision_recall(x, x, k=0)
    with pytest.raises(DataError, match="real_features needs at least 4 feature vectors, got 3"):
        precision_recall(np.zeros((3, 3)), x, k=3)
    with pytest.raises(DataError, match="same width D, got 3 and 2"):
        precision_recall(x, np.zeros((10, 2)))


# --- evaluate_samples with a user's feature network ----------------------------------------------


def user_feature_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Tanh())


@requires_fashion_mnist
def test_evaluate_samples_with_a_user_feature_network(fashion_mnist_small):
    train, test = fashion_mnist_small
    net = user_feature_net()
    same = evaluate_samples(test.images, test.images, feature_net=net)
    assert same["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    assert (same["precision"], same["recall"]) == (1.0, 1.0)
    assert same["num_fake"] == same["num_real"] == 500 and same["k"] == 3 and same["feature_net"] == "user"
    real_vs_real = evaluate_samples(train.images[:500], test.images, feature_net=net)
    noise = evaluate_samples(torch.rand(500, 1, 28, 28), test.images, feature_net=net)
    # uniform noise is far from every garment; other real images are close
    assert noise["frechet_distance"] > 10 * real_vs_real["frechet_distance"]
    assert noise["precision"] < 0.3 < 0.7 < real_vs_real["precision"]  # 0.11 and 0.81 here
    assert net.training  # the caller's train/eval mode is restored


def test_evaluate_samples_bad_inputs():
    net = user_feature_net()
    real = torch.rand(20, 1, 28, 28)
    with pytest.raises(DataError, match=r"fake_images must lie in \[0, 1\], got values in \[-1"):
        evaluate_samples(real * 2 - 1, real, feature_net=net)
    with pytest.raises(DataError, match=r"real_images must have shape \(N, C, H, W\), got \(20, 28, 28\)"):
        evaluate_samples(real, real[:, 0], feature_net=net)
    with pytest.raises(DataError, match="fake_images must be a torch.Tensor, got ndarray"):
        evaluate_samples(real.numpy(), real, feature_net=net)
    with pytest.raises(
        DataError, match=r"must map \(20, 1, 28, 28\) images to \(20, D\) features, got \(20, 1, 28, 28\)"
    ):
        evaluate_samples(real, real, feature_net=nn.Identity())


def test_evaluate_samples_without_a_cached_network_names_the_training_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PYROGEN_CACHE", str(tmp_path))
    with pytest.raises(
        F.FeatureNetworkError, match="no feature network weights at .*; train it with `pyrogen train features`"
    ):
        evaluate_samples(torch.rand(10, 1, 28, 28), torch.rand(10, 1, 28, 28))


# --- the cached feature network ------------------------------------------------------------------


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("PYROGEN_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert F.cache_dir() == str(tmp_path / "a")
    monkeypatch.delenv("PYROGEN_CACHE")
    assert F.cache_dir() == str(tmp_path / "b" / "pyrogen")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert F.cache_dir() == str(tmp_path / "home" / ".cache" / "pyrogen")


def test_saved_network_loads_and_a_tampered_file_is_detected(tmp_path):
    path, manifest_path = str(tmp_path / "net.pt"), str(tmp_path / "net.json")
    net = user_feature_net()
    manifest = F.save_network(net, path, manifest_path, info={"test_accuracy": 0.5})
    assert manifest["sha256"] == F.sha256_file(path) and json.load(open(manifest_path)) == manifest
    fresh = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Tanh())
    assert F.load_network(fresh, path, manifest_path)["test_accuracy"] == 0.5
    assert torch.equal(fresh[1].weight, net[1].weight)
    # flip one bit of one weight: still a loadable file, but not the one the manifest vouches for
    raw = bytearray(open(path, "rb").read())
    raw[-2000] ^= 1
    open(path, "wb").write(bytes(raw))
    with pytest.raises(F.FeatureNetworkError, match="do not match their manifest: SHA-256"):
        F.load_network(fresh, path, manifest_path)
    assert issubclass(F.FeatureNetworkError, CheckpointError)
    os.remove(manifest_path)
    with pytest.raises(F.FeatureNetworkError, match="no manifest"):
        F.load_network(fresh, path, manifest_path)


class NotATensor:
    pass


def test_loading_refuses_pickled_objects_even_with_a_matching_hash(tmp_path):
    path, manifest_path = str(tmp_path / "net.pt"), str(tmp_path / "net.json")
    torch.save({"weight": NotATensor()}, path)
    json.dump({"sha256": F.sha256_file(path)}, open(manifest_path, "w"))
    with pytest.raises(F.FeatureNetworkError, match="cannot load the feature network weights"):
        F.load_network(user_feature_net(), path, manifest_path)


def test_stale_recipe_is_refused_and_retrained_on_request(tmp_path, monkeypatch):
    untrained = F.FashionMNISTClassifier()
    stale = dict(F.FEATURE_RECIPE, version=0)
    F.save_network(untrained, *F.default_paths(tmp_path), info={"recipe": stale, "test_accuracy": 0.1})
    with pytest.raises(
        F.FeatureNetworkError, match=r"trained by another recipe \(version 0, current 2\); train it with"
    ):
        F.load_classifier(tmp_path)
    calls = []

    def fake_train(directory, progress=True):  # stands in for the minutes-long training
        calls.append(directory)
        return untrained, F.save_network(
            untrained, *F.default_paths(directory), info={"recipe": F.FEATURE_RECIPE, "test_accuracy": 0.9}
        )

    monkeypatch.setattr(F, "train_feature_network", fake_train)
    net = F.load_feature_network(tmp_path, train_if_missing=True, progress=False)
    assert calls == [tmp_path]
    assert net.test_accuracy == 0.9 and net.sha256 == F.sha256_file(F.default_paths(tmp_path)[0])
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, F.FEATURE_DIM)
    assert F.load_classifier(tmp_path)[1]["test_accuracy"] == 0.9  # now valid: loads without training


def test_training_recipe_is_reproducible():
    torch.manual_seed(0)
    x, y = torch.rand(256, 1, 28, 28), torch.randint(0, 10, (256,))
    recipe = dict(F.FEATURE_RECIPE, epochs=1, batch_size=64)
    state = torch.get_rng_state()
    a, info = F.train_classifier(x, y, x, y, recipe=recipe, progress=False)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random stream is left alone
    torch.rand(3)  # ...and a different global state does not change the result (dropout is seeded too)
    b, _ = F.train_classifier(x, y, recipe=recipe, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert info["recipe"] == recipe and 0 <= info["test_accuracy"] <= 1


def test_feature_training_shows_a_bar_within_each_epoch(capsys):
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    F.train_classifier(x, y, recipe=dict(F.FEATURE_RECIPE, epochs=1, batch_size=32), progress=True)
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and "4/4" in captured.err and "loss=" in captured.err
    assert captured.out.startswith("epoch 1/1: train loss")  # the epoch's line, once the bar is gone


def test_extract_features_batches_agree_with_one_call():
    net = F.FashionMNISTClassifier().features
    x = torch.rand(25, 1, 28, 28)
    assert torch.allclose(extract_features(net, x, batch_size=7), net.eval()(x).double(), atol=1e-6)


def test_cli_train_features_keeps_a_valid_cache_and_retrains_on_force(tmp_path, monkeypatch, capsys):
    from pyrogen.cli import main

    untrained = F.FashionMNISTClassifier()
    calls = []

    def fake_train(directory, progress=True):
        calls.append(directory)
        return untrained, F.save_network(
            untrained,
            *F.default_paths(directory),
            info={"recipe": F.FEATURE_RECIPE, "test_accuracy": 0.9, "train_seconds": 1.0},
        )

    monkeypatch.setattr(F, "train_feature_network", fake_train)
    assert main(["train", "features", "--cache-dir", str(tmp_path)]) == 0
    assert calls == [str(tmp_path)] and "wrote " in capsys.readouterr().out
    assert main(["train", "features", "--cache-dir", str(tmp_path)]) == 0
    assert calls == [str(tmp_path)] and "valid cached feature network" in capsys.readouterr().out
    assert main(["train", "features", "--cache-dir", str(tmp_path), "--force"]) == 0
    assert len(calls) == 2


def test_loading_refuses_a_truncated_file_even_with_a_matching_hash(tmp_path):
    path, manifest_path = str(tmp_path / "net.pt"), str(tmp_path / "net.json")
    F.save_network(user_feature_net(), path, manifest_path)
    open(path, "r+b").truncate(500)
    json.dump({"sha256": F.sha256_file(path)}, open(manifest_path, "w"))
    with pytest.raises(F.FeatureNetworkError, match="cannot load the feature network weights"):
        F.load_network(user_feature_net(), path, manifest_path)


@requires_fashion_mnist
def test_sample_quality_of_a_run_directory(tmp_path, monkeypatch, capsys):
    from pyrogen.cli import main
    from pyrogen.evaluation.sample_quality import evaluate_run

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "vae",
                "--out",
                str(run),
                "--train-size",
                "300",
                "--test-size",
                "50",
                "--epochs",
                "1",
                "--latent-dim",
                "4",
                "--hidden",
                "32",
                "--eval-samples",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    net = user_feature_net()
    a = evaluate_run(str(run), num_samples=200, feature_net=net, seed=1)
    assert a == evaluate_run(str(run), num_samples=200, feature_net=net, seed=1)  # seeded samples
    assert a["num_fake"] == a["num_real"] == 200 and a["frechet_distance"] > 0 and a["feature_net"] == "user"
    with pytest.raises(DataError, match="num_samples must be at most the 10000 test images, got 10001"):
        evaluate_run(str(run), num_samples=10001, feature_net=net)
    # the command line, with a (valid, untrained) cached default network; a missing one is a one-line error
    monkeypatch.setenv("PYROGEN_CACHE", str(tmp_path / "cache"))
    capsys.readouterr()
    assert main(["sample-quality", str(run), "-n", "100", "--device", "cpu"]) == 2
    assert "pyrogen: error: no feature network weights" in capsys.readouterr().err
    F.save_network(F.FashionMNISTClassifier(), *F.default_paths(), info={"recipe": F.FEATURE_RECIPE})
    assert main(["sample-quality", str(run), "-n", "100", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "100 samples vs 100 test images, k = 3, feature network " in printed
    # Kept in the run under its settings, and shown by the report.
    saved = run / "evaluations" / "sample-quality-n100-seed0-epoch1.json"
    assert f"wrote {saved}" in printed
    result = json.loads(saved.read_text())
    assert result["num_fake"] == 100 and result["written_by"] == "pyrogen sample-quality"
    from pyrogen.report import build_report

    page = build_report(str(run))
    assert "Sample quality (pyrogen sample-quality)" in page
    assert "evaluations/sample-quality-n100-seed0-epoch1.json" in page
    assert f"{result['frechet_distance']:.4f}".rstrip("0").rstrip(".") in page
