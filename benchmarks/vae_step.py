"""pyrogen's SVI step against a hand-written PyTorch VAE and Pyro's tutorial loop.

Same network for all (784-400-50 MLP with softplus, Bernoulli likelihood,
Gaussian q(z|x) with exp-scale head), same data path (Fashion-MNIST with
dynamic binarization, M = 100, L = 1), Adam lr 1e-3. The loops take turns
every ``--block`` steps, so drifting machine load hits them alike; the time per
step is the median over blocks. After the same number of epochs each model is scored by
the same test ELBO and importance-sampled log p(x) (K = 100), nats per example.

    python benchmarks/vae_step.py --epochs 5
    python benchmarks/vae_step.py --architecture conv --epochs 1 --train-size 10000   # step times only

Rows:

* ``plain``: a hand-written loss (analytic KL, as in pytorch/examples' VAE) with
  the same fused ``torch.optim.Adam`` as pyrogen; the reference (1.00x).
* ``plain-mc-kl``: the hand-written loss with the Monte Carlo KL
  :math:`\log q(z|x) - \log p(z)` at the drawn z, the estimator that
  ``Trace_ELBO`` (and so pyrogen's default) computes: the same-estimator reference.
* ``plain-default-adam``: the first hand-written loop with ``torch.optim.Adam``'s
  defaults, as such a loop is usually written.
* ``pyrogen``: :class:`~pyrogen.training.VAETrainer`'s step, i.e.
  :class:`~pyrogen.infer.TorchSVI` with :class:`~pyrogen.infer.ReparamTrace_ELBO`
  on ``vae.model``/``vae.guide`` (Monte Carlo KL, Trace_ELBO's values).
* ``pyrogen-compile``: the same with ``TorchSVI(..., compile=True)``
  (``pyrogen train vae --compile``): the ELBO recorded as one graph and compiled
  by ``torch.compile``; its compilation time is printed, not counted in the
  median (it falls in the first epoch).
* ``pyro-tutorial``: ``pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam, Trace_ELBO()).step``.
"""

import argparse
import itertools
import statistics
import time

import pyro
import torch
import torch.nn.functional as F
from torch import nn

from pyrogen.data import DeviceLoader, load_fashion_mnist, static_binarize
from pyrogen.evaluation import evaluate_dataset
from pyrogen.infer import ReparamTrace_ELBO, TorchSVI
from pyrogen.models import VAE
from pyrogen.networks import build_decoder, build_encoder


class PlainVAE(nn.Module):
    """The network of ``VAE(latent_dim=50, hidden=(400,), architecture=...)`` with a hand-written loss.

    ``"mlp"``: the layers written out (784-400-50, softplus); ``"conv"``: pyrogen's own
    convolutional encoder body and decoder (:mod:`pyrogen.networks`) with two linear heads.
    """

    def __init__(self, architecture="mlp"):
        super().__init__()
        self.architecture = architecture
        if architecture == "mlp":
            self.enc, self.loc, self.scale = nn.Linear(784, 400), nn.Linear(400, 50), nn.Linear(400, 50)
            self.dec1, self.dec2 = nn.Linear(50, 400), nn.Linear(400, 784)
        else:
            self.body = build_encoder("conv", (1, 28, 28), (400,))
            self.loc, self.scale = nn.Linear(self.body.out_features, 50), nn.Linear(self.body.out_features, 50)
            self.decoder = build_decoder("conv", 50, (1, 28, 28), 1, (400,))

    def _encode(self, x):
        """``(mu, log_sigma)`` of q(z|x), each ``(B, 50)``."""
        if self.architecture == "mlp":
            h = F.softplus(self.enc(x.flatten(1)))
        else:
            h = self.body(x.reshape(-1, 1, 28, 28))
        return self.loc(h), self.scale(h)

    def _logits(self, z):
        """Bernoulli logits ``(B, 784)``."""
        if self.architecture == "mlp":
            return self.dec2(F.softplus(self.dec1(z)))
        return self.decoder(z).flatten(1)

    def loss(self, x):
        """Negative ELBO (nats, summed over the batch) with the analytic Gaussian KL."""
        mu, log_sigma = self._encode(x)
        z = mu + log_sigma.exp() * torch.randn_like(mu)
        nll = F.binary_cross_entropy_with_logits(self._logits(z), x.flatten(1), reduction="sum")
        kl = 0.5 * (mu.pow(2) + (2 * log_sigma).exp() - 1 - 2 * log_sigma).sum()
        return nll + kl

    def mc_kl_loss(self, x):
        """The same negative ELBO with KL(q||p) estimated at the drawn z, as Trace_ELBO does."""
        mu, log_sigma = self._encode(x)
        eps = torch.randn_like(mu)
        z = mu + log_sigma.exp() * eps
        nll = F.binary_cross_entropy_with_logits(self._logits(z), x.flatten(1), reduction="sum")
        log_q_minus_log_p = (0.5 * (z.pow(2) - eps.pow(2)) - log_sigma).sum()
        return nll + log_q_minus_log_p

    def as_pyrogen(self):
        """A pyrogen VAE holding these (MLP) weights, for evaluation on the same footing."""
        vae = VAE(latent_dim=50, hidden=(400,))
        names = {"encoder.0.net.0": self.enc, "encoder.1.layers.loc": self.loc,
                 "encoder.1.layers.scale": self.scale, "decoder.net.0": self.dec1,
                 "decoder.net.2": self.dec2}
        state = {f"{k}.{p}": getattr(m, p).detach().clone() for k, m in names.items() for p in ("weight", "bias")}
        vae.load_state_dict(dict(vae.state_dict(), **state))
        return vae


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--eval-samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block", type=int, default=50, help="steps each loop takes in its turn")
    parser.add_argument("--architecture", choices=["mlp", "conv"], default="mlp",
                        help="conv: pyrogen's convolutional encoder and decoder; times only (no evaluation)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train = load_fashion_mnist("train")
    test = load_fashion_mnist("test")
    if args.train_size:
        train = train.subset(args.train_size)
    test_x = static_binarize(test.images, 12345)

    def hand_written(loss_name, **adam_options):
        """A freshly seeded PlainVAE and its step: zero_grad, loss, backward, Adam step."""
        pyro.set_rng_seed(args.seed)
        model = PlainVAE(args.architecture)
        optim = torch.optim.Adam(model.parameters(), lr=1e-3, **adam_options)
        loss_fn = getattr(model, loss_name)

        def step(x):
            optim.zero_grad(set_to_none=True)
            loss_fn(x).backward()
            optim.step()

        return model, step

    plain, plain_step = hand_written("loss", fused=True)
    plain_mc, plain_mc_step = hand_written("mc_kl_loss", fused=True)
    plain_default, plain_default_step = hand_written("loss")  # torch.optim.Adam's defaults

    pyro.set_rng_seed(args.seed)
    vae = VAE(latent_dim=50, hidden=(400,), architecture=args.architecture)
    svi = TorchSVI(vae.model, vae.guide, torch.optim.Adam(vae.parameters(), lr=1e-3, fused=True),
                   ReparamTrace_ELBO())

    pyro.set_rng_seed(args.seed)
    compiled_vae = VAE(latent_dim=50, hidden=(400,), architecture=args.architecture)
    compiled = TorchSVI(compiled_vae.model, compiled_vae.guide,
                        torch.optim.Adam(compiled_vae.parameters(), lr=1e-3, fused=True),
                        ReparamTrace_ELBO(), compile=True)
    start = time.perf_counter()
    with pyro.validation_enabled(False):
        compiled.loss_module(torch.zeros(100, 1, 28, 28)).backward()  # records and compiles
    compiled_vae.zero_grad(set_to_none=True)
    print(f"pyrogen-compile: recorded and compiled in {time.perf_counter() - start:.1f} s", flush=True)

    pyro.set_rng_seed(args.seed)
    tutorial_vae = VAE(latent_dim=50, hidden=(400,), architecture=args.architecture)
    tutorial = pyro.infer.SVI(tutorial_vae.model, tutorial_vae.guide, pyro.optim.Adam({"lr": 1e-3}),
                              pyro.infer.Trace_ELBO())

    loops = {"plain": plain_step, "plain-mc-kl": plain_mc_step, "plain-default-adam": plain_default_step,
             "pyrogen": svi.step, "pyrogen-compile": compiled.step, "pyro-tutorial": tutorial.step}
    loaders = {name: DeviceLoader(train.images, 100, binarize="dynamic", seed=args.seed + 1) for name in loops}
    per_step = {name: [] for name in loops}
    with pyro.validation_enabled(False):
        for epoch in range(args.epochs):
            batches = {name: iter(loader) for name, loader in loaders.items()}
            for _ in range(0, len(loaders["plain"]), args.block):
                for name, step in loops.items():
                    start, count = time.perf_counter(), 0
                    for x in itertools.islice(batches[name], args.block):
                        step(x)
                        count += 1
                    per_step[name].append((time.perf_counter() - start) / count)
            print(f"epoch {epoch + 1}: " + ", ".join(
                f"{n} {statistics.median(t[-(len(loaders['plain']) // args.block):]) * 1e3:.2f} ms"
                for n, t in per_step.items()), flush=True)

    reference = statistics.median(per_step["plain"])
    same_estimator = statistics.median(per_step["plain-mc-kl"])
    print(f"\nFashion-MNIST, {args.architecture} VAE, {args.epochs} epochs, M = 100, L = 1, "
          f"torch threads {torch.get_num_threads()}")
    if args.architecture == "conv":
        print("| loop | ms / step | examples / s | ratio to plain | ratio to plain-mc-kl |")
        print("|---|---|---|---|---|")
        for name, times in per_step.items():
            ms = statistics.median(times) * 1e3
            print(f"| {name} | {ms:.2f} | {100e3 / ms:.0f} | {ms / reference / 1e3:.2f}x "
                  f"| {ms / same_estimator / 1e3:.2f}x |")
        return
    models = {"plain": plain.as_pyrogen(), "plain-mc-kl": plain_mc.as_pyrogen(),
              "plain-default-adam": plain_default.as_pyrogen(), "pyrogen": vae,
              "pyrogen-compile": compiled_vae, "pyro-tutorial": tutorial_vae}
    print("| loop | ms / step | ratio to plain | ratio to plain-mc-kl | test ELBO | test log p(x), K = %d |"
          % args.eval_samples)
    print("|---|---|---|---|---|---|")
    for name, model in models.items():
        pyro.set_rng_seed(123)
        with pyro.validation_enabled(False):
            result = evaluate_dataset(model.model, model.guide, test_x, batch_size=500,
                                      num_samples=args.eval_samples)
        ms = statistics.median(per_step[name]) * 1e3
        print(f"| {name} | {ms:.2f} | {ms / reference / 1e3:.2f}x | {ms / same_estimator / 1e3:.2f}x "
              f"| {result['elbo']:.2f} | {result['log_px']:.2f} |")


if __name__ == "__main__":
    main()
