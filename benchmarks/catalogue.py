"""Tighter bounds and richer models on Fashion-MNIST: one table of test ELBO, log p(x), PSIS k-hat and time.

Every row trains one model/guide pair with :class:`pyrogen.infer.TorchSVI`
(Adam, batch 100) on dynamically binarized training images, then scores a
statically binarized test set (seed 12345) with the same estimators:

* **test ELBO**: one-draw Monte Carlo ELBO per example
  (:func:`pyrogen.evaluation.evaluate_dataset`), nats;
* **log p(x)**: importance sampling with the trained guide as proposal and
  ``--log-px-samples`` draws per image (the IWAE paper uses 5000), nats;
* **k-hat > 0.7**: the share of test images whose importance weights have a
  Pareto shape above 0.7 (:func:`pyrogen.evaluation.log_likelihood_with_khat`):
  their log p(x) is not to be trusted;
* **s/epoch**: training wall time per epoch (evaluation excluded).

Rows are a registry (:data:`ROWS`): ``register(name, build, loss, note)``
adds one.
When ``pythae`` is importable, its VAE, IWAE (n = 50), VAMP (500 pseudo-inputs)
and VAE_IAF (2 MADE blocks) train by pythae's own losses with the same
784-400-50 networks and are scored by the same estimators through a Pyro
wrapper of their encoder, decoder, learned prior (VAMP) and flow (VAE_IAF).

    python -m benchmarks.catalogue --full --epochs 100          # the lead's run (hours on a CPU)
    python -m benchmarks.catalogue --epochs 1 --train-size 1000 --test-size 100 --log-px-samples 50
    python -m benchmarks.catalogue --rows vae iwae-5 --epochs 5
"""

import argparse
import json
import time
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch import nn

from pyrogen.data import DeviceLoader, load_fashion_mnist, static_binarize
from pyrogen.evaluation import evaluate_dataset, khat_summary, log_likelihood_with_khat
from pyrogen.infer import IWAE_ELBO, TCELBO, TorchSVI
from pyrogen.models import VAE, TwoLayerVAE
from pyrogen.models.priors import UniformMixture


def interleaved_times(contenders, blocks, steps):
    """Milliseconds per step of each ``contenders[name]()`` (one training step), timed in ``blocks``
    interleaved blocks of ``steps`` steps after two warm-up steps each, with Pyro's validation off:
    ``{name: [ms per step of each block]}`` (``iwae_step.py``, ``vamp_iaf_step.py``)."""
    times = {name: [] for name in contenders}
    with pyro.validation_enabled(False):
        for step in contenders.values():
            step(), step()
        for _ in range(blocks):
            for name, step in contenders.items():
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                times[name].append(1000 * (time.perf_counter() - start) / steps)
    return times


LATENT, HIDDEN = 50, 400


@dataclass
class Row:
    """One model and estimator: ``build(args) -> nn.Module`` with ``model``/``guide`` methods;
    ``loss(args) -> ELBO``; ``train_step``, when given, replaces TorchSVI (foreign models)."""

    name: str
    build: callable = None
    loss: callable = None
    note: str = ""
    train_step: callable = None


ROWS = {}


def register(name, build=None, loss=None, note="", train_step=None):
    """Add a row to the catalogue (``build=None`` registers a placeholder that is skipped)."""
    ROWS[name] = Row(name, build, loss, note, train_step)
    return ROWS[name]


def _vae(args, **options):
    return VAE(latent_dim=LATENT, hidden=(HIDDEN,), scale_head=args.scale_head, **options)


def _two_layer(args):
    return TwoLayerVAE()  # the IWAE paper's 784-100-100-(100)-50-50-(50) tanh networks


register("vae", _vae, lambda a: TraceMeanField_ELBO(), "784-400-50, analytic KL")
register("iwae-5", _vae, lambda a: IWAE_ELBO(num_particles=5), "IWAE bound, K = 5")
register("iwae-50", _vae, lambda a: IWAE_ELBO(num_particles=50), "IWAE bound, K = 50")
register("iwae-dreg-50", _vae, lambda a: IWAE_ELBO(num_particles=50, dreg=True), "IWAE, K = 50, DReG guide gradient")
register("two-layer-vae", _two_layer, lambda a: Trace_ELBO(), "two stochastic layers (100, 50), ELBO")
register("two-layer-iwae-50", _two_layer, lambda a: IWAE_ELBO(num_particles=50), "two stochastic layers, K = 50")
register("tc-vae", _vae, lambda a: TCELBO(beta=6.0, dataset_size=a.train_size), "beta-TC-VAE, beta = 6, MWS")
register(
    "iaf",
    lambda a: _vae(a, flow="iaf:2"),
    lambda a: Trace_ELBO(),
    "q(z|x) through 2 IAF steps z exp(s) + m, no context (the default), Monte Carlo KL",
)
register(
    "iaf-context-gated",
    lambda a: _vae(a, flow="iaf:2", iaf_context=True, iaf_step="gated"),
    lambda a: Trace_ELBO(),
    "as iaf with the context h(x) and the gated step (pyrogen's IAF before 2026-12-03)",
)
register(
    "planar",
    lambda a: _vae(a, flow="planar:10"),
    lambda a: Trace_ELBO(),
    "q(z|x) through 10 planar steps, Monte Carlo KL",
)
register(
    "vampprior",
    lambda a: _vae(a, prior="vamp:500"),
    lambda a: Trace_ELBO(),
    "VampPrior, 500 pseudo-inputs, Monte Carlo KL",
)
register(
    "vampprior-sigmoid",
    lambda a: _vae(a, prior="vamp:500", pseudo_inputs="sigmoid"),
    lambda a: Trace_ELBO(),
    "as vampprior with sigmoid pseudo-inputs near 0.5 (pyrogen's before 2026-12-03)",
)


register(
    "vae-log-scale",
    lambda a: VAE(latent_dim=LATENT, hidden=(HIDDEN,), scale_head="log-scale"),
    lambda a: TraceMeanField_ELBO(),
    "as vae with sigma = exp(a), the head pyrogen had before log-variance (sigma = exp(a/2)) became its default",
)


# pythae (clementchadebec/benchmark_VAE) with the same networks, scored by pyrogen's estimators.
try:
    import pythae  # noqa: F401
    from pythae.data.datasets import DatasetOutput
    from pythae.models import IWAE, VAE as PythaeVAE, VAE_IAF, VAMP, IWAEConfig, VAE_IAF_Config, VAEConfig, VAMPConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
except ImportError:
    pythae = None

if pythae is not None:

    class _PythaeEncoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(-3), nn.Linear(784, HIDDEN), nn.Softplus())
            self.loc, self.log_var = nn.Linear(HIDDEN, LATENT), nn.Linear(HIDDEN, LATENT)

        def forward(self, x):
            h = self.body(x)
            return ModelOutput(embedding=self.loc(h), log_covariance=self.log_var(h))

    class _PythaeDecoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.Softplus(), nn.Linear(HIDDEN, 784))

        def logits(self, z):
            return self.net(z).unflatten(-1, (1, 28, 28))

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.logits(z)))

    class _PythaeAsPyro(nn.Module):
        """A pythae model's encoder and decoder as a Pyro model/guide pair (sites "z", "x").

        p(z) is :meth:`prior` (N(0, I) here), q(z|x) is :meth:`posterior` (the encoder's
        diagonal Normal, sigma = exp(log_covariance / 2), pythae's head); subclasses swap either.
        """

        def __init__(self, model):
            super().__init__()
            self.inner = model

        def prior(self, x):
            return dist.Normal(x.new_zeros(LATENT), 1.0).to_event(1)

        def posterior(self, x):
            out = self.inner.encoder(x)
            return dist.Normal(out.embedding, (0.5 * out.log_covariance).exp()).to_event(1)

        def model(self, x):
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", self.prior(x))
                logits = self.inner.decoder.logits(z)
                pyro.sample("x", dist.Bernoulli(logits=logits, validate_args=False).to_event(3), obs=x)

        def guide(self, x):
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", self.posterior(x))

    class _PythaeVampAsPyro(_PythaeAsPyro):
        """pythae's VAMP: p(z) is its learned VampPrior, (1/K) sum_k N(z; mu(u_k), diag sigma(u_k)^2),
        u_k = hardtanh_[0,1](W e_k + b) its K pseudo-inputs (``VAMP.pseudo_inputs`` of the one-hot
        ``VAMP.idle_input``) through its own encoder; the density of ``VAMP._log_p_z`` plus the
        -D/2 log(2 pi) that pythae drops (it cancels against the same term it drops from log q).
        Evaluated in blocks by pyrogen's :class:`~pyrogen.models.priors.UniformMixture`."""

        def prior(self, x):
            vamp = self.inner
            u = vamp.pseudo_inputs(vamp.idle_input.to(x.device)).reshape((vamp.number_components,) + vamp.input_dim)
            out = vamp.encoder(u)
            return UniformMixture(
                lambda loc, scale: dist.Normal(loc, scale).to_event(1),
                {"loc": out.embedding, "scale": (0.5 * out.log_covariance).exp()},
            )

    class _PythaeIAFTransform(torch.distributions.Transform):
        """pythae's IAF (``VAE_IAF.iaf_flow``, unconditioned: the same flow for every x) as a
        :class:`torch.distributions.Transform` z0 -> zK, so that q(zK|x) = q0(z0|x) |det dzK/dz0|^-1
        is a :class:`pyro.distributions.TransformedDistribution` with a log-density.

        The forward map is pythae's ``IAF.inverse`` (its sampling direction: per MADE block,
        after a flip, z <- z * exp(s(z)) + m(z)), whose ``log_abs_det_jac`` is sum_i s_i: the
        Jacobian is triangular because pythae's MADE masks make (m_i, s_i) depend on z_<i only.
        The inverse is pythae's ``IAF.forward`` (sequential, d passes per block), used only at
        values that are not the last draw (the cache, ``cache_size=1``, covers every ELBO and
        importance weight here). Extra leading dimensions are flattened, since pythae's flow
        takes ``(N, d)``."""

        domain = torch.distributions.constraints.real_vector
        codomain = torch.distributions.constraints.real_vector
        bijective = True

        def __init__(self, flow):
            super().__init__(cache_size=1)
            self.flow = flow
            self._last = None  # (z0, zK, log|det dzK/dz0|) of the last forward call

        def _call(self, z0):
            out = self.flow.inverse(z0.reshape(-1, z0.shape[-1]))
            zk, logdet = out.out.reshape(z0.shape), out.log_abs_det_jac.reshape(z0.shape[:-1])
            self._last = (z0, zk, logdet)
            return zk

        def _inverse(self, zk):
            return self.flow(zk.reshape(-1, zk.shape[-1])).out.reshape(zk.shape)

        def log_abs_det_jacobian(self, z0, zk):
            if self._last is not None and self._last[0] is z0 and self._last[1] is zk:
                return self._last[2]
            return self.flow.inverse(z0.reshape(-1, z0.shape[-1])).log_abs_det_jac.reshape(z0.shape[:-1])

    class _PythaeIAFAsPyro(_PythaeAsPyro):
        """pythae's VAE_IAF: q(z|x) is the encoder's Normal pushed through its IAF
        (:class:`_PythaeIAFTransform`), scored with the flow's log-determinant as pythae's own
        loss and ``get_nll`` score it; p(z) = N(0, I)."""

        def posterior(self, x):
            return dist.TransformedDistribution(super().posterior(x), [_PythaeIAFTransform(self.inner.iaf_flow)])

    def _pythae(kind):
        def build(args):
            common = dict(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce")
            nets = dict(encoder=_PythaeEncoder(), decoder=_PythaeDecoder())
            if kind == "vae":
                return _PythaeAsPyro(PythaeVAE(VAEConfig(**common), **nets))
            if kind == "iwae":
                return _PythaeAsPyro(IWAE(IWAEConfig(**common, number_samples=50), **nets))
            if kind == "vamp":
                return _PythaeVampAsPyro(VAMP(VAMPConfig(**common, number_components=500), **nets))
            # as close to pyrogen's iaf:2 as pythae allows: 2 MADE blocks of one hidden layer of
            # 10 d = 500 ReLU units (Pyro's AutoRegressiveNN default); pythae's flow has no context h(x)
            config = VAE_IAF_Config(**common, n_made_blocks=2, n_hidden_in_made=1, hidden_size=10 * LATENT)
            return _PythaeIAFAsPyro(VAE_IAF(config, **nets))

        return build

    def _pythae_step(module, optimizer, x):
        optimizer.zero_grad(set_to_none=True)
        loss = module.inner(DatasetOutput(data=x)).loss  # pythae's loss: mean over the batch
        loss.backward()
        optimizer.step()
        return loss.detach() * x.shape[0]

    register("pythae-vae", _pythae("vae"), note="pythae 0.1.2 VAE, same networks", train_step=_pythae_step)
    register("pythae-iwae-50", _pythae("iwae"), note="pythae 0.1.2 IWAE, n = 50", train_step=_pythae_step)
    register("pythae-vamp", _pythae("vamp"), note="pythae 0.1.2 VAMP, 500 pseudo-inputs", train_step=_pythae_step)
    register(
        "pythae-iaf",
        _pythae("iaf"),
        train_step=_pythae_step,
        note="pythae 0.1.2 VAE_IAF, 2 MADE blocks (1 x 500 hidden), flow not conditioned on x",
    )


def run(row, train, test, args):
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    module = row.build(args).to(args.device)
    optimizer = torch.optim.Adam(module.parameters(), lr=args.lr)
    if row.train_step is None:
        svi = TorchSVI(module.model, module.guide, optimizer, row.loss(args))

        def step(x):
            return svi.step(x)
    else:

        def step(x):
            return row.train_step(module, optimizer, x)

    loader = DeviceLoader(train, batch_size=args.batch_size, binarize="dynamic", seed=args.seed, device=args.device)
    seconds = 0.0
    for epoch in range(args.epochs):
        start = time.perf_counter()
        total = torch.zeros((), device=args.device)
        with pyro.validation_enabled(False):
            for x in loader:
                total += step(x)
        total = total.item()  # one host synchronisation per epoch
        seconds += time.perf_counter() - start
        print(f"  {row.name:18s} epoch {epoch + 1}: train loss {total / len(train):.2f} nats/example", flush=True)
    module.eval()
    with pyro.validation_enabled(False), torch.no_grad():
        elbo = evaluate_dataset(module.model, module.guide, test, batch_size=args.eval_batch_size)["elbo"]
        scored = log_likelihood_with_khat(
            module.model,
            module.guide,
            test,
            num_samples=args.log_px_samples,
            batch_size=args.eval_batch_size,
            chunk_size=args.chunk_size,
        )
    summary = khat_summary(scored["khat"])
    return {
        "row": row.name,
        "note": row.note,
        "elbo": elbo,
        "log_px": scored["log_px"],
        "khat_above": summary["share_above_threshold"],
        "seconds_per_epoch": seconds / max(args.epochs, 1),
    }


def table(results):
    header = ("row", "test ELBO", "log p(x)", "k-hat > 0.7", "s/epoch", "note")
    lines = [
        (
            r["row"],
            f"{r['elbo']:.2f}",
            f"{r['log_px']:.2f}",
            f"{100 * r['khat_above']:.1f}%",
            f"{r['seconds_per_epoch']:.1f}",
            r["note"],
        )
        for r in results
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    rule = "  ".join("=" * w for w in widths)
    out = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths)), rule]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out + [rule])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", default=None, help=f"rows to run (default: all runnable): {', '.join(ROWS)}")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-size", type=int, default=10000)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--log-px-samples", type=int, default=5000, help="importance samples K per test image")
    p.add_argument("--full", action="store_true", help="all 60,000 training and 10,000 test images")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--eval-batch-size", type=int, default=100)
    p.add_argument("--chunk-size", type=int, default=500, help="importance samples per vectorized pass")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scale-head",
        choices=["log-variance", "log-scale"],
        default="log-variance",
        help="the normal guide's scale head of the one-layer rows (VAE(scale_head=...)); docs/bounds.rst's "
        "rows other than vae were measured with log-scale, the default before 2026-12-03",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.full:
        args.train_size, args.test_size = 60000, 10000
    names = args.rows or [name for name, row in ROWS.items() if row.build is not None]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")

    train = load_fashion_mnist("train").images[: args.train_size].to(args.device)
    test = static_binarize(load_fashion_mnist("test").images[: args.test_size].to(args.device), seed=12345)
    args.train_size = train.shape[0]
    print(
        f"Fashion-MNIST, {args.train_size} training / {test.shape[0]} test images (dynamic / static "
        f"binarization), {args.epochs} epochs, Adam lr {args.lr}, batch {args.batch_size}, seed {args.seed}; "
        f"log p(x) with K = {args.log_px_samples}; {args.device}, {torch.get_num_threads()} CPU threads"
        f"{'' if pythae else '; pythae not installed: its rows are absent'}"
    )
    results = []
    for name in names:
        row = ROWS[name]
        if row.build is None:
            print(f"  {name}: skipped ({row.note})")
            continue
        results.append(run(row, train, test, args))
    print()
    print(table(results))
    print(
        "Nats per test image; higher ELBO and log p(x) are better. Fashion-MNIST figures are not comparable with "
        "the binarized-MNIST figures of the IWAE paper."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
