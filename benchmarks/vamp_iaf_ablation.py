"""Ablations of pyrogen's VampPrior and IAF rows against pythae's, one difference at a time.

Each row below is a catalogue row (:mod:`catalogue`) that differs from pyrogen's
VampPrior or IAF as they were before 2026-12-03 (now the catalogue's ``vampprior-sigmoid``
and ``iaf-context-gated`` rows) in one or two respects of pythae's ``VAMP`` / ``VAE_IAF``;
the command line is the catalogue's, e.g.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 5 /work/pythae-venv/bin/python -m benchmarks.vamp_iaf_ablation \\
        --rows iaf-no-context --epochs 10 --train-size 10000 --test-size 1000 --log-px-samples 1000 --threads 1

VampPrior rows (the default now, the catalogue's ``vampprior``: hard-tanh pseudo-inputs with a shared bias):

* ``vampprior-sigmoid`` (a catalogue row): pseudo-inputs sigmoid(logits) starting near 0.5, pyrogen's before;
* ``vamp-hardtanh-no-bias``: hardtanh(w_k), no shared bias b, w_k started where w_k + b starts.

IAF rows (against ``iaf-context-gated``: Pyro's conditional MADE on (z, h(x)), hidden 10 d = 500, stable gated
step sigma * z + (1 - sigma) * m with sigma = sigmoid(s + 2), a random variable order per step):

* ``iaf-no-context``: the same steps, not conditioned on h(x) (pythae's flow has no context);
* ``iaf-unstable``: conditioned, with the affine step z * exp(s) + m (log-scale clipped to [-5, 3]);
* ``iaf-no-context-unstable``: no context and the affine step, random orders (the default now, the
  catalogue's ``iaf``, up to the random-number stream: the steps are built after the VAE's);
* ``iaf-unstable-flip``: context and the affine step, orders 1..d then d..1;
* ``iaf-pythae-like``: no context, affine step, orders 1..d then d..1 (pythae's flip between blocks).
"""

import sys

import torch
from pyro.distributions import transforms as T
from pyro.infer import Trace_ELBO
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN

from benchmarks import catalogue
from benchmarks.catalogue import HIDDEN, LATENT, _vae, register


def _iaf(context=True, stable=True, flip=False):
    def build(args):
        vae = _vae(args, flow="iaf:2")
        steps = []
        for i in range(2):
            perm = None if not flip else (torch.arange(LATENT) if i == 0 else torch.arange(LATENT).flip(0))
            if context:
                arn = ConditionalAutoRegressiveNN(LATENT, HIDDEN, [10 * LATENT], param_dims=[1, 1], permutation=perm)
                steps.append(T.ConditionalAffineAutoregressive(arn, stable=stable))
            else:
                arn = AutoRegressiveNN(LATENT, [10 * LATENT], param_dims=[1, 1], permutation=perm)
                steps.append(T.AffineAutoregressive(arn, stable=stable))
        vae.flow.transforms = torch.nn.ModuleList(steps)
        return vae

    return build


def _vamp_no_bias(args):
    vae = _vae(args, prior="vamp:500")
    prior = vae.vamp
    with torch.no_grad():
        prior.pseudo_weight.add_(prior.pseudo_bias)  # same starting pseudo-inputs
        prior.pseudo_bias.zero_()
    prior.pseudo_bias.requires_grad_(False)
    return vae


register("vamp-hardtanh-no-bias", _vamp_no_bias, lambda a: Trace_ELBO(), "VampPrior, hardtanh(w_k), no shared bias")
register("iaf-no-context", _iaf(context=False), lambda a: Trace_ELBO(), "IAF 2 steps, stable, no context h(x)")
register("iaf-unstable", _iaf(stable=False), lambda a: Trace_ELBO(), "IAF 2 steps, context, z exp(s) + m")
register(
    "iaf-no-context-unstable",
    _iaf(context=False, stable=False),
    lambda a: Trace_ELBO(),
    "IAF 2 steps, no context, z exp(s) + m, random orders",
)
register(
    "iaf-unstable-flip",
    _iaf(stable=False, flip=True),
    lambda a: Trace_ELBO(),
    "IAF 2 steps, context, z exp(s) + m, orders flipped",
)
register(
    "iaf-pythae-like",
    _iaf(context=False, stable=False, flip=True),
    lambda a: Trace_ELBO(),
    "IAF 2 steps, no context, z exp(s) + m, orders flipped",
)

if __name__ == "__main__":
    catalogue.main(sys.argv[1:])
