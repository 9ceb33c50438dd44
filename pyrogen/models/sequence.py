"""A VAE for token sequences with an LSTM decoder, and the random LSTM language model that makes synthetic data.

The decoder is strong in Bowman et al.'s (CoNLL 2016) sense: an
autoregressive LSTM :math:`p_\\theta(x \\mid z) = \\prod_t p_\\theta(x_t \\mid x_{<t}, z)`
can model the data well without z, which is what makes posterior collapse
likely. As in He, Spokoyny, Neubig and Berg-Kirkpatrick (ICLR 2019), z
initialises the decoder's state and is concatenated to every input
embedding; the encoder is an LSTM whose last hidden state gives the
parameters of :math:`q_\\phi(z \\mid x)`.

:class:`RandomLSTMLanguageModel` generates sequences from a latent code
through an LSTM with random weights, in the spirit of He et al.'s synthetic
experiment: the data have a known latent structure, and everything is made
locally from a seed.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, pyro_method
from torch import nn

from pyrogen.distributions import ParameterHead, get_family
from pyrogen.errors import DataError


class _LSTMDecoder(nn.Module):
    """Logits of :math:`p(x_t \\mid x_{<t}, z)` for all t by teacher forcing: ``(N, T, V)``."""

    def __init__(self, vocab_size, latent_dim, embed_dim, hidden, dropout=0.0, bias=True):
        super().__init__()
        self.embed = nn.Embedding(vocab_size + 1, embed_dim)  # token vocab_size is <bos>
        self.init = nn.Linear(latent_dim, hidden, bias=bias)
        self.lstm = nn.LSTM(embed_dim + latent_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size, bias=bias)
        self.dropout_in, self.dropout_out = nn.Dropout(dropout), nn.Dropout(dropout)
        self.bos = vocab_size

    def initial_state(self, z):
        c = self.init(z).unsqueeze(0)
        return torch.tanh(c), c

    def forward(self, z, x):
        n, length = x.shape
        inputs = torch.cat([torch.full((n, 1), self.bos, dtype=x.dtype, device=x.device), x[:, :-1]], 1)
        emb = torch.cat([self.dropout_in(self.embed(inputs)), z.unsqueeze(1).expand(n, length, z.shape[-1])], -1)
        h, _ = self.lstm(emb, self.initial_state(z))
        return self.out(self.dropout_out(h))

    @torch.no_grad()
    def sample(self, z, length, temperature=1.0):
        n = z.shape[0]
        state = self.initial_state(z)
        token = torch.full((n,), self.bos, dtype=torch.long, device=z.device)
        tokens = []
        for _ in range(length):
            emb = torch.cat([self.embed(token), z], -1).unsqueeze(1)
            h, state = self.lstm(emb, state)
            token = torch.distributions.Categorical(logits=self.out(h[:, 0]) / temperature).sample()
            tokens.append(token)
        return torch.stack(tokens, 1)


class _LSTMEncoder(nn.Module):
    def __init__(self, vocab_size, embed_dim, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.out_features = hidden

    def forward(self, x):
        _, (h, _) = self.lstm(self.embed(x))
        return h[-1]


class LogVarHead(nn.Module):
    """He et al.'s Gaussian head: one bias-free linear map to ``(loc, log σ²)``, ``scale = exp(log σ² / 2)``.

    Same family as :class:`~pyrogen.distributions.ParameterHead` for
    ``"normal"`` (whose scale is ``exp`` of its own bias-carrying linear
    output, i.e. log σ), but a different parameterisation: a weight update of
    the same size moves log σ half as far, so under plain SGD the effective
    step on log σ is 4 times smaller (the gradient reaching the weights is
    halved too). ``forward`` returns ``{"loc", "scale"}``, each ``(..., latent_dim)``.
    """

    def __init__(self, in_features, latent_dim):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * latent_dim, bias=False)

    def forward(self, h):
        loc, logvar = self.linear(h).chunk(2, -1)
        return {"loc": loc, "scale": torch.exp(0.5 * logvar)}


class SequenceVAE(PyroModule):
    """VAE over fixed-length token sequences with an LSTM encoder and an autoregressive LSTM decoder.

    ``model`` and ``guide`` follow :class:`~pyrogen.models.VAE`: site ``"z"``
    (event ``(latent_dim,)``) and site ``"x"`` (a ``Categorical`` per position,
    event ``(seq_len,)``) inside ``pyro.plate("data", B)``, ``kl_weight``
    applying ``poutine.scale`` to ``"z"``, and extra vectorized sample
    dimensions to the left of the plate allowed (importance sampling).

    :param int vocab_size: V; tokens are integers in ``[0, V)``.
    :param int seq_len: T.
    :param int latent_dim: dimension of z.
    :param int embed_dim: token embedding width (encoder and decoder).
    :param int hidden: LSTM width (encoder and decoder).
    :param float dropout: dropout rate on the decoder's input embeddings and LSTM
        outputs while training (He et al. 2019 use 0.5 in both places), which
        weakens the autoregressive path and so pushes the decoder towards z.
    :param str heads: ``"pyrogen"`` -- :class:`~pyrogen.distributions.ParameterHead`
        (loc and log σ from linear maps with biases), decoder maps with biases;
        ``"he2019"`` -- their code's: :class:`LogVarHead` (bias-free, log σ²)
        and bias-free ``z -> c0`` and output maps.
    """

    def __init__(self, vocab_size, seq_len, latent_dim=32, embed_dim=32, hidden=64, dropout=0.0, heads="pyrogen"):
        super().__init__()
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        if heads not in ("pyrogen", "he2019"):
            raise ValueError(f"heads must be 'pyrogen' or 'he2019', got {heads!r}")
        self.vocab_size, self.seq_len, self.latent_dim = vocab_size, seq_len, latent_dim
        self.config = {
            "vocab_size": vocab_size,
            "seq_len": seq_len,
            "latent_dim": latent_dim,
            "embed_dim": embed_dim,
            "hidden": hidden,
            "dropout": dropout,
            "heads": heads,
        }
        self.family = get_family("normal")
        body = _LSTMEncoder(vocab_size, embed_dim, hidden)
        head = LogVarHead(hidden, latent_dim) if heads == "he2019" else ParameterHead(hidden, self.family, latent_dim)
        self.encoder = nn.Sequential(body, head)
        self.decoder = _LSTMDecoder(vocab_size, latent_dim, embed_dim, hidden, dropout, bias=heads != "he2019")
        for name, value in self.family.prior_params(latent_dim).items():
            self.register_buffer("prior_" + name, value)

    def prior(self):
        return self.family(**{n: getattr(self, "prior_" + n) for n in self.family.prior})

    def _observations(self, x):
        if x.dim() != 2 or x.shape[1] != self.seq_len or x.dtype != torch.long:
            raise DataError(f"x must be a (B, {self.seq_len}) tensor of int64 tokens, got {tuple(x.shape)} {x.dtype}")
        return x

    def logits(self, z, x):
        """Decoder logits ``z.shape[:-1] + (T, V)`` for latents ``(..., B, D)`` and tokens ``(B, T)``."""
        batch = z.shape[:-1]
        xb = x.expand(batch + x.shape[-1:]).reshape(-1, self.seq_len)
        return self.decoder(z.reshape(-1, self.latent_dim), xb).reshape(batch + (self.seq_len, self.vocab_size))

    @pyro_method
    def model(self, x, batch_size=None, kl_weight=1.0):
        """p(z) ∏_t p(x_t | x_<t, z), scoring the sequences ``x`` ``(B, T)``."""
        x = self._observations(x)
        with pyro.plate("data", x.shape[0]):
            with pyro.poutine.scale(scale=kl_weight):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", dist.Categorical(logits=self.logits(z, x)).to_event(1), obs=x)

    @pyro_method
    def guide(self, x, batch_size=None, kl_weight=1.0):
        """q(z|x): a diagonal Normal from the encoder LSTM's last state."""
        x = self._observations(x)
        with pyro.plate("data", x.shape[0]):
            params = self.encoder(x)
            with pyro.poutine.scale(scale=kl_weight):
                return pyro.sample("z", self.family(**params))

    def encode(self, x):
        return self.encoder(self._observations(x))

    @torch.no_grad()
    def sample(self, num_samples):
        """Sequences ``(n, T)`` decoded from z ~ p(z)."""
        return self.decoder.sample(self.prior().sample((num_samples,)), self.seq_len)


class RandomLSTMLanguageModel(nn.Module):
    """Synthetic data: z ~ N(0, I), then tokens from an LSTM with random weights conditioned on z.

    Weights are drawn from N(0, ``scale``²) with a seeded generator; the latent
    code enters as :class:`SequenceVAE`'s decoder takes it (initial state and
    every input), with its projection scaled by ``latent_scale`` so that z
    changes the sequences strongly. Returns ``(sequences (n, T) int64, z (n, latent_dim))``.
    """

    def __init__(
        self,
        vocab_size=20,
        seq_len=10,
        latent_dim=2,
        embed_dim=16,
        hidden=32,
        scale=3.0,
        latent_scale=3.0,
        temperature=1.0,
        seed=0,
    ):
        super().__init__()
        self.seq_len, self.latent_dim, self.temperature = seq_len, latent_dim, temperature
        self.net = _LSTMDecoder(vocab_size, latent_dim, embed_dim, hidden)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * scale / p.shape[-1] ** 0.5 * 2)
            self.net.init.weight.mul_(latent_scale)
            self.net.lstm.weight_ih_l0[:, embed_dim:].mul_(latent_scale)
        self.seed = seed

    @torch.no_grad()
    def generate(self, n, seed=None):
        state = torch.get_rng_state()
        torch.manual_seed(self.seed + 1 if seed is None else seed)
        try:
            z = torch.randn(n, self.latent_dim)
            x = self.net.sample(z, self.seq_len, self.temperature)
        finally:
            torch.set_rng_state(state)
        return x, z
