"""The feature network's files (issue 27 item 5): a process killed between writing new weights and their
manifest leaves the earlier network valid and usable."""

import os
import subprocess
import sys

import torch

from pyrogen.models import features as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _network(seed):
    torch.manual_seed(seed)
    return F.FashionMNISTClassifier()


def _same_weights(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_a_kill_between_new_weights_and_their_manifest_keeps_the_earlier_network(tmp_path):
    path, manifest_path = F.default_paths(tmp_path)
    old = _network(0)
    F.save_network(old, path, manifest_path, info={"test_accuracy": 0.5})
    # A second process saves another network and is SIGKILLed just before its manifest is written.
    code = (
        "import os, signal, sys, torch\n"
        "from pyrogen.models import features as F\n"
        "real = F.atomic_write\n"
        "def killed_at_manifest(path, *a, **k):\n"
        "    if path.endswith('.json'):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(path, *a, **k)\n"
        "F.atomic_write = killed_at_manifest\n"
        "torch.manual_seed(1)\n"
        "F.save_network(F.FashionMNISTClassifier(), *F.default_paths(sys.argv[1]), info={'test_accuracy': 0.9})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=dict(os.environ, PYTHONPATH=ROOT),
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == -9, done.stderr
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".pt")]) == 3  # fixed name, old, the orphan new
    loaded = F.FashionMNISTClassifier()
    assert F.load_network(loaded, path, manifest_path)["test_accuracy"] == 0.5
    assert _same_weights(loaded, old)
    assert F.sha256_file(path) == F.read_manifest(manifest_path, path)["sha256"]  # the fixed name: still the old
    # The next save completes: the new network is the one read, and no earlier weights file is left.
    new = _network(2)
    manifest = F.save_network(new, path, manifest_path, info={"test_accuracy": 0.7})
    assert F.load_network(loaded, path, manifest_path)["test_accuracy"] == 0.7 and _same_weights(loaded, new)
    assert sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(path), os.path.basename(manifest_path), manifest["file"]]
    )
    assert F.sha256_file(path) == manifest["sha256"]


def test_a_manifest_of_an_older_version_names_the_fixed_file(tmp_path):
    """Caches written before the weights were named by their hash keep loading."""
    path, manifest_path = F.default_paths(tmp_path)
    net = _network(0)
    torch.save(net.state_dict(), path)
    with open(manifest_path, "w") as f:
        f.write(f'{{"sha256": "{F.sha256_file(path)}", "file": "fashion_mnist_features.pt"}}')
    loaded = F.FashionMNISTClassifier()
    F.load_network(loaded, path, manifest_path)
    assert _same_weights(loaded, net)


def test_a_manifest_naming_a_file_in_another_folder_is_not_followed(tmp_path):
    path, manifest_path = F.default_paths(tmp_path)
    F.save_network(_network(0), path, manifest_path)
    manifest = F.read_manifest(manifest_path, path)
    assert F.weights_file(dict(manifest, file="../elsewhere.pt"), manifest_path, path) == path
    assert F.weights_file(dict(manifest, file="/etc/passwd"), manifest_path, path) == path
