"""ALI written by hand after its authors' convolutional recipe (Dumoulin et al., "Adversarially Learned
Inference", ICLR 2017, appendix A; ``experiments/ali_svhn.py`` of github.com/IshmaelBelghazi/ALI), scaled
from 32x32 to 28x28: the reference of ``benchmarks.ali_quality`` (its module docs describe the networks
and the update) and of the tests that check ``pyrogen train ali``'s defaults against it: with the
reference's weights copied in, pyrogen's networks compute the same functions (:func:`check_same_networks`)
and its trainer takes the same steps (:func:`check_same_step`)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

LATENT_DIM = 64
BATCH_SIZE = 100
LR, BETAS = 1e-4, (0.5, 0.999)
DROPOUT = 0.2


# ----------------------------------------------------------------------------- the reference loop


def lrelu():
    return nn.LeakyReLU(0.01)  # Blocks' LeakyRectifier, ALI's activation


class ReferenceALI(nn.Module):
    """ALI's players scaled to 28x28 (see the module docs); ``ch`` is the first convolution's maps."""

    def __init__(self, nz=LATENT_DIM, ch=32, pixel_mean=0.5):
        super().__init__()
        self.nz = nz
        self.encoder = nn.Sequential(
            nn.Conv2d(1, ch, 4, 2, 1, bias=False), nn.BatchNorm2d(ch), lrelu(),            # 14x14
            nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ch), lrelu(),   # 7x7
            nn.Conv2d(2 * ch, 8 * ch, 7, 1, 0, bias=False), nn.BatchNorm2d(8 * ch), lrelu(),  # 1x1
            nn.Conv2d(8 * ch, 2 * nz, 1),                                                  # mu, log sigma
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(nz, 8 * ch, 7, 1, 0, bias=False), nn.BatchNorm2d(8 * ch), lrelu(),      # 7x7
            nn.ConvTranspose2d(8 * ch, 2 * ch, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ch), lrelu(),  # 14x14
            nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1, bias=False), nn.BatchNorm2d(ch), lrelu(),          # 28x28
            nn.Conv2d(ch, 1, 1), nn.Sigmoid(),
        )  # fmt: skip
        self.d_x = nn.Sequential(
            nn.Dropout(DROPOUT), nn.Conv2d(1, ch, 4, 2, 1), lrelu(),
            nn.Dropout(DROPOUT), nn.Conv2d(ch, 2 * ch, 4, 2, 1), lrelu(),
            nn.Dropout(DROPOUT), nn.Conv2d(2 * ch, 8 * ch, 7, 1, 0), lrelu(), nn.Flatten(),
        )  # fmt: skip
        self.d_z = nn.Sequential(
            nn.Dropout(DROPOUT), nn.Linear(nz, 8 * ch), lrelu(),
            nn.Dropout(DROPOUT), nn.Linear(8 * ch, 8 * ch), lrelu(),
        )  # fmt: skip
        self.d_xz = nn.Sequential(
            nn.Dropout(DROPOUT), nn.Linear(16 * ch, 16 * ch), lrelu(),
            nn.Dropout(DROPOUT), nn.Linear(16 * ch, 16 * ch), lrelu(),
            nn.Dropout(DROPOUT), nn.Linear(16 * ch, 1),
        )  # fmt: skip
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        with torch.no_grad():  # ALI sets the output bias to the log-odds of the data's marginals
            self.decoder[-2].bias.fill_(math.log(pixel_mean / (1 - pixel_mean)))

    def encode(self, x, sample=True):
        mu, log_sigma = self.encoder(x).flatten(1).chunk(2, dim=1)
        return mu + log_sigma.exp() * torch.randn_like(mu) if sample else mu

    def decode(self, z):
        return self.decoder(z[:, :, None, None])

    def discriminate(self, x, z):
        return self.d_xz(torch.cat([self.d_x(2 * x - 1), self.d_z(z)], 1)).squeeze(1)

    def player_parameters(self):
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def discriminator_parameters(self):
        return [*self.d_x.parameters(), *self.d_z.parameters(), *self.d_xz.parameters()]


class ReferenceLoop:
    """The hand-written loop: one epoch of ALI's algorithm per :meth:`train_epoch`."""

    def __init__(self, train_images, seed):
        torch.manual_seed(seed)
        self.ali = ReferenceALI(pixel_mean=train_images.mean().item())
        self.opt_g = torch.optim.Adam(self.ali.player_parameters(), lr=LR, betas=BETAS)
        self.opt_d = torch.optim.Adam(self.ali.discriminator_parameters(), lr=LR, betas=BETAS)
        self.data = train_images
        self.shuffle = torch.Generator().manual_seed(seed + 1)
        self.flags = ""  # the hand-written loop has no health checks

    def step(self, x):
        """ALI's update on the batch ``x``; returns the discriminator's accuracy on its pairs."""
        ali, b = self.ali, x.shape[0]
        z_hat = ali.encode(x)  # data pairs (x, z ~ q(z|x))
        z = torch.randn(b, ali.nz)
        x_tilde = ali.decode(z)  # model pairs (x ~ G(z), z ~ p(z))
        scores = ali.discriminate(torch.cat([x, x_tilde]), torch.cat([z_hat, z]))
        s_q, s_p = scores[:b], scores[b:]
        loss_d = (F.softplus(-s_q) + F.softplus(s_p)).mean()
        loss_g = (F.softplus(s_q) + F.softplus(-s_p)).mean()
        d_params, g_params = ali.discriminator_parameters(), ali.player_parameters()
        grads_d = torch.autograd.grad(loss_d, d_params, retain_graph=True)
        grads_g = torch.autograd.grad(loss_g, g_params)
        for p, g in zip([*d_params, *g_params], [*grads_d, *grads_g]):
            p.grad = g
        self.opt_d.step()
        self.opt_g.step()
        return ((s_q > 0).float().mean() + (s_p < 0).float().mean()).item() / 2

    def train_epoch(self):
        self.ali.train()
        n = self.data.shape[0]
        perm = torch.randperm(n, generator=self.shuffle)
        d_acc = [self.step(self.data[perm[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]]) for i in range(n // BATCH_SIZE)]
        self.d_accuracy = sum(d_acc) / len(d_acc)

    @torch.no_grad()
    def codes(self, x):
        self.ali.eval()
        return torch.cat([self.ali.encode(x[i : i + 500], sample=False) for i in range(0, len(x), 500)])

    @torch.no_grad()
    def decode(self, z):
        self.ali.eval()
        return torch.cat([self.ali.decode(z[i : i + 500]) for i in range(0, len(z), 500)])


PREVIOUS = (
    ("model.network", None),
    ("model.scale_head", "log-variance"),
    ("discriminator.x_hidden", [256, 256]),
    ("discriminator.z_hidden", [256, 256]),
    ("discriminator.joint_hidden", [256, 256]),
    ("discriminator.slope", None),
    ("discriminator.init_std", None),
    ("train.update", "alternating"),
)
"""The ``--set`` settings that turn the present defaults back into the earlier ones (``pyrogen-dcgan``):
DCGAN's layout of the pair (2x - 1 inputs, a linear layer after the convolutions, LeakyReLU(0.2) and ReLU,
N(0, 0.02)), the log-variance head, a joint discriminator of width 256 throughout and the alternating
update. A ``None`` value removes the key."""


def apply_settings(config, settings):
    for key, value in settings or ():  # --set SECTION.KEY=JSON; null removes the key
        section, name = key.split(".", 1)
        if value is None:
            config[section].pop(name, None)
        else:
            config[section][name] = value
    return config


_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


def _layers(*modules):
    return [m for module in modules for m in module.modules() if isinstance(m, _WEIGHTED)]


def _corresponding_layers(ref, vae, disc):
    """The pairs (reference layer, pyrogen layer), in order; raises when the layers differ."""
    pairs = [
        *zip(_layers(ref.encoder)[:-1], _layers(vae.encoder[0])),
        *zip(_layers(ref.decoder), _layers(vae.decoder)),
        *zip(_layers(ref.d_x, ref.d_z, ref.d_xz), _layers(disc.phi_x, disc.phi_z, disc.joint)),
    ]
    if len(pairs) != len(_layers(ref)) - 1 or len(_layers(vae, disc)) != len(_layers(ref)) + 1:
        raise AssertionError("the pyrogen networks do not have the reference's layers")
    return pairs


@torch.no_grad()
def _copy_reference(ref, vae, disc):
    """Copy a :class:`ReferenceALI`'s weights (and batch-norm statistics) into pyrogen's pair and
    joint discriminator, in place: the encoder's last 1x1 convolution becomes the loc and scale heads."""
    for src, dst in _corresponding_layers(ref, vae, disc):
        for name, value in src.state_dict().items():
            dst.state_dict()[name].copy_(value.reshape(dst.state_dict()[name].shape))
    head, last = vae.encoder[1].layers, ref.encoder[-1]
    for i, name in enumerate(("loc", "scale")):
        head[name].weight.copy_(last.weight[i * ref.nz : (i + 1) * ref.nz, :, 0, 0])
        head[name].bias.copy_(last.bias[i * ref.nz : (i + 1) * ref.nz])


@torch.no_grad()
def _largest_difference(ref, vae, disc, images):
    """The largest absolute difference of the two sides' outputs on ``images`` (mean and scale of
    q(z|x), decoded images, discriminator scores), in training mode without dropout and in eval mode;
    leaves everything in training mode."""
    z = torch.randn(images.shape[0], ref.nz, generator=torch.Generator().manual_seed(0), dtype=images.dtype)
    worst = 0.0
    for mode in ("train", "eval"):
        for m in (ref, vae, disc):
            m.train(mode == "train")
        for m in [*ref.modules(), *disc.modules()]:
            if isinstance(m, nn.Dropout):
                m.eval()
        mu, log_sigma = ref.encoder(images).flatten(1).chunk(2, dim=1)
        q = vae.posterior(images).base_dist
        outputs = [
            (mu, q.loc),
            (log_sigma.exp(), q.scale),
            (ref.decode(z), vae.decode(z).reshape(images.shape)),
            (ref.discriminate(images, z), disc(images, z)),
        ]
        worst = max([worst, *((a - b).abs().max().item() for a, b in outputs)])
    for m in (ref, vae, disc):
        m.train()
    return worst


def check_same_networks(images, settings=()):
    """Copy a :class:`ReferenceALI`'s weights into the pyrogen pair and joint discriminator of
    ``pyrogen train ali`` (its defaults, changed by ``settings``), and return the largest absolute
    difference of their outputs on ``images`` (mean and scale of q(z|x), decoded images and
    discriminator scores, in training mode without dropout and in eval mode): about 1e-6 when the two
    compute the same functions."""
    from pyrogen.config import default_ali_config
    from pyrogen.models.registry import build_model, build_pair_discriminator

    config = apply_settings(default_ali_config(), settings)
    ref, vae, disc = ReferenceALI(), build_model(config), build_pair_discriminator(config)
    _copy_reference(ref, vae, disc)
    return _largest_difference(ref, vae, disc, images)


def check_same_step(train_images, steps=3, seed=0, settings=(), batch_size=BATCH_SIZE):
    """Train the reference loop and ``pyrogen train ali``'s trainer (defaults, changed by ``settings``)
    for ``steps`` steps of ``batch_size`` images from
    the same weights, on the same batches with the same noise, in float64 with dropout off, and return
    ``(largest gradient difference after the first step, largest output difference after the last)``:
    both about 1e-12 when pyrogen's estimator, losses and optimizers take ALI's update exactly."""
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the noise both loops draw, too
    try:
        return _same_step(train_images.double(), steps, seed, settings, batch_size)
    finally:
        torch.set_default_dtype(previous_dtype)


def _same_step(images, steps, seed, settings, batch_size):
    from pyrogen.config import default_ali_config
    from pyrogen.training.ali import build_ali_trainer

    config = apply_settings(default_ali_config(), settings)
    config["data"].update(train_size=images.shape[0])
    config["train"].update(seed=seed, probe_size=0, batch_size=batch_size)
    torch.manual_seed(seed)
    trainer = build_ali_trainer(config, device="cpu", progress=False, data=(images, None, images[:batch_size], None))
    ref_loop = ReferenceLoop(images, seed)
    ref, vae, disc = ref_loop.ali, trainer.vae, trainer.discriminator  # float64: built under that default
    _copy_reference(ref, vae, disc)
    for m in [*ref.modules(), *disc.modules()]:
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    grad_difference = None
    for i in range(steps):
        x = images[i * batch_size : (i + 1) * batch_size]
        torch.manual_seed(seed + 100 + i)
        ref_loop.step(x)
        torch.manual_seed(seed + 100 + i)
        trainer.estimator.step(x)
        if grad_difference is None:
            grad_difference = max(
                (a.grad.reshape(-1) - b.grad.reshape(-1)).abs().max().item()
                for src, dst in _corresponding_layers(ref, vae, disc)
                for a, b in zip(src.parameters(), dst.parameters())
            )
    return grad_difference, _largest_difference(ref, vae, disc, images[:batch_size])
