"""pyrogen.kinds: every run kind is one record, and nothing outside the package compares kind names."""

import os
import re

import pytest

from pyrogen.config import migrate
from pyrogen.errors import RunDirError
from pyrogen.kinds import KINDS, commands, for_command, get_kind
from pyrogen.kinds.base import RunKind

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "pyrogen")


def _sources(skip=()):
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith(".py") and not any(path.startswith(os.path.join(PACKAGE, s)) for s in skip):
                yield path, open(path, encoding="utf-8").read()


def test_every_kind_is_registered_under_its_own_name():
    assert set(KINDS) == {"vae", "ae", "cvae", "gan", "ali", "aae", "features"}
    for name, kind in KINDS.items():
        assert isinstance(kind, RunKind) and kind.name == name
    assert [k.command for k in commands()] == ["vae", "ae", "gan", "ali", "aae", "features"]
    with pytest.raises(RunDirError, match="unknown run kind 'diffusion'"):
        get_kind("diffusion")


@pytest.mark.parametrize("name", ["vae", "ae", "cvae", "gan", "ali", "aae"])
def test_a_kinds_default_configuration_is_of_that_kind_and_builds_its_model(name):
    kind = KINDS[name]
    config = kind.default_config()
    assert migrate(config).kind == name
    assert kind.model(config) is not None
    assert kind.trainer_class().__name__.endswith("Trainer")


def test_capabilities():
    assert not KINDS["gan"].has_density and KINDS["gan"].can_sample and KINDS["gan"].adversarial
    assert KINDS["cvae"].conditional and KINDS["cvae"].usage == "vae --conditional"
    assert not KINDS["features"].can_sample and not KINDS["features"].configured
    assert [n for n, k in KINDS.items() if k.evaluate] == ["vae", "ae", "ali", "aae"]
    assert KINDS["ae"].evaluate == "objective"


def test_conditional_vae_options_make_a_cvae():
    from pyrogen.cli import build_parser

    args = build_parser().parse_args(["train", "vae", "--out", "x", "--conditional"])
    assert for_command("vae", args).name == "cvae"
    assert for_command("vae", build_parser().parse_args(["train", "vae", "--out", "x"])).name == "vae"


def test_no_kind_name_is_compared_outside_the_kinds_package():
    # a run's kind (a variable, an attribute, a config key) compared with == / != / in; the kinds of a flow,
    # of the VampPrior's pseudo-inputs and of a data source are other things
    # (lookups of a kind in a table, such as `kind in MODELS`, are not comparisons of names)
    names = "vae|ae|cvae|gan|ali|aae|features"
    pattern = re.compile(
        r"\bkind\b[\"'\]\)]*\s*((==|!=)\s*[\"']|(not\s+)?in\s*[(\[{]\s*[\"'])"
        rf"|[\"']({names})[\"']\s*(==|!=)[^=]*\bkind\b"
    )
    other = ("flow.kind", "source.kind", "dtype.kind", 'self.kind == "sigmoid"', '"fashion-mnist"')
    found = [
        f"{os.path.relpath(p, ROOT)}: {line.strip()}"
        for p, text in _sources(skip=("kinds",))
        for line in text.splitlines()
        if pattern.search(line) and not any(o in line for o in other) and not line.strip().startswith("#")
    ]
    assert found == []


def test_config_defaults_are_read_only_in_the_migration():
    """``.get("key", default)`` reads of a configuration live in pyrogen/settings.py's migrate alone (the files
    of the adversarial trainers and the fit loop are rewritten apart and not yet checked here)."""
    pattern = re.compile(r"(config|cfg|train|data)(\[\"\w+\"\])?\.get\(\"\w+\", ")
    checked = (
        "runs.py",
        "cli.py",
        "config.py",
        "report.py",
        "plotting.py",
        os.path.join("models", "registry.py"),
        os.path.join("training", "vae.py"),
        os.path.join("training", "cvae.py"),
    )
    found = [
        f"{name}: {line.strip()}"
        for name in checked
        for line in open(os.path.join(PACKAGE, name), encoding="utf-8").read().splitlines()
        if pattern.search(line)
    ]
    assert found == []


def test_the_command_line_is_thin():
    with open(os.path.join(PACKAGE, "cli.py"), encoding="utf-8") as f:
        assert len(f.read().splitlines()) <= 500
