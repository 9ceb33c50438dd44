r"""pyrogen's SVI step against a hand-written PyTorch VAE and Pyro's tutorial loop.

Same network for all (784-400-50 MLP with softplus, Bernoulli likelihood,
Gaussian q(z|x) with exp-scale head), same data path (Fashion-MNIST with
dynamic binarization, M = 100, L = 1), Adam lr 1e-3. The loops take turns
every ``--block`` steps, so drifting machine load hits them alike; the time per
step is the median over blocks. After the same number of epochs each model is scored by
the same test ELBO and importance-sampled log p(x) (K = 100), nats per example.

    python -m benchmarks.vae_step --epochs 5
    python -m benchmarks.vae_step --architecture conv --epochs 1 --train-size 10000   # step times only
    python -m benchmarks.vae_step --batch-size 1024 --epochs 5     # the other batch sizes: 256, 1024

Rows:

* ``plain``: a hand-written loss (analytic KL, as in pytorch/examples' VAE) with
  the same fused ``torch.optim.Adam`` as pyrogen; the reference (1.00x).
* ``plain-mc-kl``: the hand-written loss with the Monte Carlo KL
  :math:`\log q(z|x) - \log p(z)` at the drawn z, the estimator that
  ``Trace_ELBO`` (and so pyrogen's default) computes: the same-estimator reference.
* ``plain-default-adam``: the first hand-written loop with ``torch.optim.Adam``'s
  defaults, as such a loop is usually written.
* ``pyrogen``: :class:`~pyrogen.training.VAETrainer`'s eager step (``--compile off``),
  i.e. :class:`~pyrogen.infer.TorchSVI` on ``vae.model``/``vae.guide`` with the
  objective ``--elbo auto`` picks (:func:`~pyrogen.training.vae.resolve_elbo`):
  :class:`~pyrogen.infer.ReparamTraceMeanField_ELBO` (analytic KL,
  ``TraceMeanField_ELBO``'s values), running the model's and guide's Python at
  every step; compare with ``plain``.
* ``pyrogen-record``: the same step recorded once as a graph of tensor operations
  and replayed (``TorchSVI(..., compile="record")``, ``--compile record``), the
  default trainer's step for runs shorter than
  :data:`~pyrogen.config.AUTO_COMPILE_MIN_STEPS`: the eager step's numbers bit for
  bit; its recording time is printed, not counted in the median.
* ``pyrogen-pyro-meanfield``: the same step on Pyro's own ``TraceMeanField_ELBO``
  (its ``differentiable_loss``, with the ``.item()`` inside).
* ``pyrogen-trace``: ``--elbo trace``, :class:`~pyrogen.infer.ReparamTrace_ELBO`
  (Monte Carlo KL, Trace_ELBO's values); compare with ``plain-mc-kl``.
* ``pyrogen-compile``: the default objective with ``TorchSVI(..., compile="on")``
  (``pyrogen train vae --compile``): the ELBO recorded as one graph and compiled
  by ``torch.compile``; its compilation time is printed, not counted in the
  median (it falls in the first epoch).
* ``pyro-tutorial``: ``pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam, Trace_ELBO()).step``.
* ``pythae``: pythae's ``VAE`` (its forward and loss: analytic KL, mean over the
  batch) on the same layers, with ``torch.optim.Adam`` lr 1e-3, when pythae is
  importable (an optional peer, never a dependency of pyrogen: install it into a
  side environment with ``pip install pythae``). MLP only.

Besides ms per step, every loop reports its training time (its own
blocks only, evaluation excluded, by the clock that ``--clock`` names) until its test ELBO on the first
``--target-images`` statically binarized test images first reaches
``--target-elbo`` (-250 nats), checked every ``--target-every`` blocks.

``--device cuda`` runs the same comparison on a GPU (``benchmarks/gpu_check.sh``);
``--cudagraphs`` adds a ``pyrogen-compile-cudagraphs`` row (the compiled ELBO with
inductor's CUDA graphs), ``--autocast bf16`` runs the hand-written and pyrogen
eager steps under ``torch.autocast`` (rows suffixed ``-bf16``).

On a CPU shared with other jobs, ``--clock cpu`` times each block by the
thread's CPU time (:func:`time.thread_time`) instead of the wall clock, which
also counts the time the thread waits for a core: with ``--threads 1`` the
ratios then measure the work of each step, not the machine's load (caches
and memory bandwidth are still shared). ``--rows`` times a subset of the loops.

    OMP_NUM_THREADS=1 python -m benchmarks.vae_step --threads 1 --clock cpu --rows pyrogen pyrogen-pyro-meanfield
"""

import argparse
import itertools
import math
import statistics
import time

import pyro
import torch
import torch.nn.functional as F

from benchmarks.references.plain_vae import PlainVAE
from pyrogen.data import DeviceLoader, load_fashion_mnist, static_binarize
from pyrogen.evaluation import evaluate_dataset
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.models import VAE
from pyrogen.training.vae import ELBOS, resolve_elbo

try:  # an optional peer for the comparison, never a dependency
    from pythae.data.datasets import DatasetOutput
    from pythae.models import VAE as PythaeVAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
except ImportError:
    PythaeVAE = None


def pythae_vae(plain):
    """pythae's ``VAE`` on the layers of an (MLP) :class:`PlainVAE`: its forward, its loss.

    pythae's encoder returns the log-variance, which the scale head of ``plain`` gives (as
    pyrogen's default log-variance head does), so ``plain.as_pyrogen()`` still maps it.
    """

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.enc, self.loc, self.scale = plain.enc, plain.loc, plain.scale

        def forward(self, x):
            h = F.softplus(self.enc(x.flatten(1)))
            return ModelOutput(embedding=self.loc(h), log_covariance=self.scale(h))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.dec1, self.dec2 = plain.dec1, plain.dec2

        def forward(self, z):
            probs = torch.sigmoid(self.dec2(F.softplus(self.dec1(z))))
            return ModelOutput(reconstruction=probs.reshape(-1, 1, 28, 28))

    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=50, reconstruction_loss="bce")
    return PythaeVAE(config, encoder=Encoder(), decoder=Decoder())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--eval-samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block", type=int, default=50, help="steps each loop takes in its turn")
    parser.add_argument(
        "--architecture",
        choices=["mlp", "conv"],
        default="mlp",
        help="conv: pyrogen's convolutional encoder and decoder; times only (no evaluation)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=100, help="M, examples per step")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--target-elbo", type=float, default=-250.0, help="the test ELBO (nats per image) whose first crossing is timed"
    )
    parser.add_argument("--target-every", type=int, default=2, help="check the target every N blocks")
    parser.add_argument("--target-images", type=int, default=2000, help="test images for the target check")
    parser.add_argument("--cudagraphs", action="store_true", help="add the compiled step with CUDA graphs")
    parser.add_argument(
        "--autocast",
        choices=["bf16"],
        default=None,
        help="add plain and pyrogen eager rows under torch.autocast(bfloat16)",
    )
    parser.add_argument("--no-pythae", action="store_true", help="leave pythae out even if importable")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="time steps by the wall clock, or by this thread's CPU time (CPU only: on a shared "
        "machine it leaves out the time the thread waits for a core)",
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        default=None,
        metavar="ROW",
        help="time only these loops (plain is always in): e.g. --rows pyrogen pyrogen-pyro-meanfield",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = args.batch_size
    if args.clock == "cpu" and device.type != "cpu":
        parser.error("--clock cpu times the host thread, which waits for the device; use --clock wall on CUDA")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter

    train = load_fashion_mnist("train")
    test = load_fashion_mnist("test")
    if args.train_size:
        train = train.subset(args.train_size)
    test_x = static_binarize(test.images, 12345).to(device)
    target_x = test_x[: args.target_images]

    def hand_written(loss_name, autocast=False, **adam_options):
        """A freshly seeded PlainVAE and its step: zero_grad, loss, backward, Adam step."""
        pyro.set_rng_seed(args.seed)
        model = PlainVAE(args.architecture).to(device)
        optim = torch.optim.Adam(model.parameters(), lr=1e-3, **adam_options)
        loss_fn = getattr(model, loss_name)

        def step(x):
            optim.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(x)
            loss.backward()
            optim.step()

        return model, step

    def pyrogen_loop(compile="off", autocast=False, elbo="auto", **compile_options):
        pyro.set_rng_seed(args.seed)
        vae = VAE(latent_dim=50, hidden=(400,), architecture=args.architecture).to(device)
        if elbo == "auto":  # what VAETrainer builds for --elbo auto
            name = resolve_elbo(vae, "auto")[0]
            loss = ReparamTrace_ELBO() if name == "trace" else ELBOS[name]()
        else:
            loss = {"trace": ReparamTrace_ELBO, "pyro-meanfield": pyro.infer.TraceMeanField_ELBO}[elbo]()
        svi = TorchSVI(
            vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=1e-3, fused=True), loss, compile=compile
        )
        if compile_options:
            svi.loss_module.compile_options.update(compile_options)
        if compile != "off":
            start = time.perf_counter()
            with pyro.validation_enabled(False):
                svi.loss_module(torch.zeros(batch, 1, 28, 28, device=device)).backward()  # records and compiles
            vae.zero_grad(set_to_none=True)
            name = (
                "pyrogen-record: recorded"
                if compile == "record"
                else (f"pyrogen-compile{'-cudagraphs' if compile_options else ''}: recorded and compiled")
            )
            print(f"{name} in {time.perf_counter() - start:.1f} s", flush=True)
        if not autocast:
            return vae, svi.step

        def step(x):
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return svi.step(x)

        return vae, step

    rows = (
        [
            "plain",
            "plain-mc-kl",
            "plain-default-adam",
            "pyrogen",
            "pyrogen-record",
            "pyrogen-pyro-meanfield",
            "pyrogen-trace",
            "pyrogen-compile",
        ]
        + (["pyrogen-compile-cudagraphs"] if args.cudagraphs else [])
        + (["plain-bf16", "pyrogen-bf16"] if args.autocast else [])
        + ["pyro-tutorial"]
        + (["pythae"] if args.architecture == "mlp" and not args.no_pythae else [])
    )
    if args.rows:
        unknown = set(args.rows) - set(rows)
        if unknown:
            parser.error(f"--rows: unknown loop(s) {sorted(unknown)}; the loops are {rows}")
        rows = [name for name in rows if name in args.rows or name == "plain"]

    def tutorial_loop():
        pyro.set_rng_seed(args.seed)
        vae = VAE(latent_dim=50, hidden=(400,), architecture=args.architecture).to(device)
        svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO())
        return vae, svi.step

    def pythae_loop():
        pyro.set_rng_seed(args.seed)
        layers = PlainVAE("mlp").to(device)
        model = pythae_vae(layers).to(device)
        optim = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(x):
            optim.zero_grad(set_to_none=True)
            model(DatasetOutput(data=x)).loss.backward()
            optim.step()

        return layers, step

    builders = {
        "plain": lambda: hand_written("loss", fused=True),
        "plain-mc-kl": lambda: hand_written("mc_kl_loss", fused=True),
        "plain-default-adam": lambda: hand_written("loss"),  # Adam's defaults
        "pyrogen": lambda: pyrogen_loop(),
        "pyrogen-record": lambda: pyrogen_loop(compile="record"),
        "pyrogen-pyro-meanfield": lambda: pyrogen_loop(elbo="pyro-meanfield"),
        "pyrogen-trace": lambda: pyrogen_loop(elbo="trace"),
        "pyrogen-compile": lambda: pyrogen_loop(compile="on"),
        "pyrogen-compile-cudagraphs": lambda: pyrogen_loop(compile="on", **{"triton.cudagraphs": True}),
        "plain-bf16": lambda: hand_written("loss", autocast=True, fused=True),
        "pyrogen-bf16": lambda: pyrogen_loop(autocast=True),
        "pyro-tutorial": tutorial_loop,
        "pythae": pythae_loop,
    }
    if "pythae" in rows and PythaeVAE is None:
        print("pythae is not importable here: no pythae row (pip install pythae in a side environment)")
        rows.remove("pythae")
    models, loops = {}, {}
    for name in rows:
        models[name], loops[name] = builders[name]()

    def as_pyrogen(name):
        model = models[name]
        return model.as_pyrogen().to(device) if isinstance(model, PlainVAE) else model

    def test_elbo(name, x):
        model = as_pyrogen(name)
        pyro.set_rng_seed(123)
        with pyro.validation_enabled(False):
            return evaluate_dataset(model.model, model.guide, x, batch_size=500)["elbo"]

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    loaders = {
        name: DeviceLoader(train.images, batch, binarize="dynamic", seed=args.seed + 1, device=device) for name in loops
    }
    per_step = {name: [] for name in loops}
    trained = dict.fromkeys(loops, 0.0)  # seconds of training so far
    reached = dict.fromkeys(loops)  # seconds of training when the target ELBO was first reached
    blocks_per_epoch = max(1, len(loaders["plain"]) // args.block)
    with pyro.validation_enabled(False):
        for epoch in range(args.epochs):
            batches = {name: iter(loader) for name, loader in loaders.items()}
            for block in range(0, len(loaders["plain"]), args.block):
                for name, step in loops.items():
                    sync()
                    start, count = clock(), 0
                    for x in itertools.islice(batches[name], args.block):
                        step(x)
                        count += 1
                    sync()
                    seconds = clock() - start
                    if count:
                        per_step[name].append(seconds / count)
                        trained[name] += seconds
                    if reached[name] is None and (block // args.block + 1) % args.target_every == 0:
                        if test_elbo(name, target_x) >= args.target_elbo:
                            reached[name] = trained[name]
            print(
                f"epoch {epoch + 1}: "
                + ", ".join(
                    f"{n} {statistics.median(t[-blocks_per_epoch:]) * 1e3:.2f} ms" for n, t in per_step.items()
                ),
                flush=True,
            )

    reference = statistics.median(per_step["plain"])
    same_estimator = statistics.median(per_step["plain-mc-kl"]) if "plain-mc-kl" in per_step else float("nan")
    print(
        f"\nFashion-MNIST, {args.architecture} VAE on {device.type}, {args.epochs} epochs, M = {batch}, L = 1, "
        f"torch threads {torch.get_num_threads()}, {args.clock} clock, median of {len(per_step['plain'])} blocks "
        f"of {args.block} steps"
    )

    def to_same_estimator(ms):  # "–" when the plain-mc-kl row was left out (--rows)
        return "–" if math.isnan(same_estimator) else f"{ms / same_estimator / 1e3:.2f}x"

    def reach(name):
        return f"{reached[name]:.1f} s" if reached[name] is not None else "not reached"

    if args.architecture == "conv":
        print(
            "| loop | ms / step | examples / s | ratio to plain | ratio to plain-mc-kl "
            f"| to ELBO {args.target_elbo:g} |"
        )
        print("|---|---|---|---|---|---|")
        for name, times in per_step.items():
            ms = statistics.median(times) * 1e3
            print(
                f"| {name} | {ms:.2f} | {batch * 1e3 / ms:.0f} | {ms / reference / 1e3:.2f}x "
                f"| {to_same_estimator(ms)} | {reach(name)} |"
            )
        return
    print(
        f"| loop | ms / step | ratio to plain | ratio to plain-mc-kl | to ELBO {args.target_elbo:g} | test ELBO "
        f"| test log p(x), K = {args.eval_samples} |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in loops:
        model = as_pyrogen(name)
        pyro.set_rng_seed(123)
        with pyro.validation_enabled(False):
            result = evaluate_dataset(model.model, model.guide, test_x, batch_size=500, num_samples=args.eval_samples)
        ms = statistics.median(per_step[name]) * 1e3
        print(
            f"| {name} | {ms:.2f} | {ms / reference / 1e3:.2f}x | {to_same_estimator(ms)} "
            f"| {reach(name)} | {result['elbo']:.2f} | {result['log_px']:.2f} |"
        )


if __name__ == "__main__":
    main()
