import os
from pathlib import Path

import pyro
import pytest
import torch

from pyrogen.data import FASHION_MNIST_DIR, load_fashion_mnist

requires_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST_DIR) and not os.environ.get("CI"),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist); CI always has it",
)


# A fixed thread count for the suite and the commands it starts: the thread governor (pyrogen.threads), which
# the command runs when OMP_NUM_THREADS is unset, would change the count with the machine's load, and with it
# the last bits of runs that tests compare bit for bit. tests/test_threads.py removes it where it tests that.
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _fresh_pyro():
    """Each test starts with an empty param store, validation on and a fixed seed."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny networks train faster than on shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def docs_html(tmp_path_factory):
    """The documentation built once per session with ``sphinx-build -W``
    (tests/integration/test_docs.py, test_browser.py)."""
    pytest.importorskip("sphinx", reason="the docs extra is not installed: pip install -e '.[docs]'")
    from sphinx.cmd.build import build_main

    docs = Path(__file__).resolve().parent.parent / "docs"
    out = tmp_path_factory.mktemp("html")
    log = out.parent / "sphinx-warnings.txt"
    status = build_main(["-W", "--keep-going", "-q", "-b", "html", "-w", str(log), str(docs), str(out)])
    assert status == 0, "sphinx-build -W failed:\n" + log.read_text()
    return out


@pytest.fixture(scope="session")
def fashion_mnist_small():
    """The first 2,000 training and 500 test images of Fashion-MNIST (grey levels in [0, 1])."""
    train = load_fashion_mnist("train").subset(2000)
    test = load_fashion_mnist("test").subset(500)
    return train, test


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
