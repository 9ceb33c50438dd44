"""pyrogen.kinds: every run kind is one record, and nothing outside the package compares kind names."""

import ast
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


CONFIG_RECEIVERS = re.compile(r"(^|_)(config|cfg|settings|train|model|data|eval|discriminator)$")
"""Names of what holds a run's configuration or one of its sections (``config``, ``self.config``,
``train_cfg``, ``data_config``, ``model``, ``config["train"]``, ``config.get("train")``, ...)."""


def _receiver(node):
    """The name a ``.get``'s receiver ends in: ``config`` of ``self.config``, of ``config["train"]`` and of
    ``config.get("train")``; None for anything else (a call's result, a literal)."""
    while True:
        if isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            node = node.func.value
        else:
            break
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def defaults_read_outside_the_migration(sources):
    """``path:line: code`` of every ``.get(key, default)`` on a configuration (or a section of one) in
    ``sources`` (``(path, text)`` pairs): reads that guess a setting's value where the configuration lacks it."""
    found = []
    for path, text in sources:
        for node in ast.walk(ast.parse(text, path)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"):
                continue
            name = _receiver(node.func.value)
            if name is not None and CONFIG_RECEIVERS.search(name) and len(node.args) + len(node.keywords) >= 2:
                found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_config_defaults_are_read_only_in_the_migration():
    """``.get("key", default)`` reads of a configuration live in pyrogen/settings.py's migrate alone: every
    other module reads the complete, frozen settings that migrate makes (metrics rows, manifests, checkpoint
    states and result files are read by other names, and are not configurations)."""
    settings = os.path.join(PACKAGE, "settings.py")
    assert defaults_read_outside_the_migration(p for p in _sources() if p[0] != settings) == []


def test_the_defaults_scan_sees_what_it_is_about():
    """The scan finds the reads the fit loop and the game trainers had (a subscripted section, a section read by
    ``.get``, a ``self.`` attribute) and passes over reads of other things (a metrics row, a manifest, a table)."""
    flagged = """
name = train.get("precision", "32")
seed = self.config["train"].get("seed", 0)
value = self.config.get("train").get("log_every", 20)
threshold = cfg.get("min_classes_covered", 8)
schedule = train_cfg.get("kl_schedule", default="constant")
"""
    passed = """
epoch = row.get("epoch", 0)
recipe = manifest.get("recipe", {})
label = _LABELS.get(k, k)
kind = config.get("kind")
"""
    found = defaults_read_outside_the_migration([(os.path.join(PACKAGE, "x.py"), flagged + passed)])
    assert [line.split(": ", 1)[0] for line in found] == [f"pyrogen/x.py:{n}" for n in range(2, 7)]


def test_the_command_line_is_thin():
    with open(os.path.join(PACKAGE, "cli.py"), encoding="utf-8") as f:
        assert len(f.read().splitlines()) <= 500
