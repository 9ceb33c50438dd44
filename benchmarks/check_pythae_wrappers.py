"""Checks that the catalogue's Pyro wrappers of pythae's VAMP and VAE_IAF score what pythae's models are.

Run with pythae installed (a side environment; pythae is never a dependency):

    PYTHONPATH=. python -m benchmarks.check_pythae_wrappers

* VAMP: the wrapper's prior log-density equals pythae's ``VAMP._log_p_z`` plus the
  -D/2 log(2 pi) that pythae drops (tolerance 1e-4 nats);
* VAE_IAF: the flow's log|det| used for log q(z|x) equals the log|det| of the autograd
  Jacobian of pythae's ``IAF.inverse`` (tolerance 1e-3 nats, float32, d = 50); the
  sequential inverse (pythae's ``IAF.forward``) undoes it (1e-4); log q(z|x) from the
  cache at the guide's own draw equals the value through the sequential inverse (1e-3),
  and equals pythae's own ``log_q_z_given_x`` of ``VAE_IAF.get_nll`` minus the
  D/2 log(2 pi) pythae drops (1e-3).
"""

import math

import torch

from benchmarks import catalogue

D = catalogue.LATENT


def main():
    if catalogue.pythae is None:
        raise SystemExit("pythae is not importable: install it in a side environment (pip install pythae)")
    torch.manual_seed(0)
    args = type("Args", (), {})()
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))

    vamp = catalogue._pythae("vamp")(args)
    z = 2 * torch.randn(4, D)
    gap = (vamp.prior(x).log_prob(z) - (vamp.inner._log_p_z(z) - D / 2 * math.log(2 * math.pi))).abs().max()
    assert gap < 1e-4, f"VampPrior log-density differs from pythae's by {gap}"

    iaf = catalogue._pythae("iaf")(args)
    with torch.no_grad():
        for p in iaf.inner.iaf_flow.parameters():  # away from pythae's near-identity start
            p += 0.05 * torch.randn_like(p)
    t = catalogue._PythaeIAFTransform(iaf.inner.iaf_flow)
    z0 = torch.randn(1, D)
    jac = torch.autograd.functional.jacobian(lambda v: t._call(v.unsqueeze(0))[0], z0[0])
    gap = (torch.linalg.slogdet(jac)[1] - t.log_abs_det_jacobian(z0, t._call(z0))[0]).abs()
    assert gap < 1e-3, f"IAF log|det| differs from the autograd Jacobian's by {gap}"
    zk = t._call(torch.randn(3, 4, D))
    gap = (t._call(t._inverse(zk)) - zk).abs().max()
    assert gap < 1e-4, f"IAF sequential inverse is off by {gap}"
    q = iaf.posterior(x)
    draws = q.rsample(torch.Size([5]))
    gap = (q.log_prob(draws) - q.log_prob(draws.clone())).abs().max()
    assert gap < 1e-3, f"log q(z|x) from the cache differs from the sequential inverse's by {gap}"
    # pythae's own log q(z|x) (get_nll): Gaussian at z0 minus the flow's log|det|, without -D/2 log(2 pi)
    out = iaf.inner.encoder(x)
    mu, log_var = out.embedding, out.log_covariance
    z0 = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
    flow = iaf.inner.iaf_flow.inverse(z0)
    pythae_log_q = (-0.5 * (log_var + (z0 - mu) ** 2 / log_var.exp())).sum(1) - flow.log_abs_det_jac
    gap = (q.log_prob(flow.out.clone()) - (pythae_log_q - D / 2 * math.log(2 * math.pi))).abs().max()
    assert gap < 1e-3, f"log q(z|x) differs from pythae's by {gap}"
    print("pythae wrappers: VampPrior density, IAF log-determinant, inverse and log q(z|x) agree with pythae")


if __name__ == "__main__":
    main()
