"""Conditional models: the projection discriminator, the conditional generator with Adversarial, the cVAE."""

import pyro
import pytest
import torch
from pyro import poutine

from pyrogen.errors import DataError
from pyrogen.infer import Adversarial, TorchSVI
from pyrogen.models import ConditionalGenerator, ConditionalVAE
from pyrogen.models.gan import ProjectionDiscriminator

K = 4
PROTOTYPES = 0.1 + 0.8 * torch.eye(K).reshape(K, 1, 2, 2)  # class k: pixel k bright, the others dark


def test_projection_discriminator_output_equals_its_formula():
    disc = ProjectionDiscriminator(num_classes=10, image_shape=(1, 4, 4), hidden=(16, 8))
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 3, 9, 3, 1, 7])
    with torch.no_grad():
        phi = disc.features(x)
        expected = phi @ disc.psi.weight[0] + disc.psi.bias[0] + (disc.embed.weight[y] * phi).sum(1)
        lrelu = torch.nn.functional.leaky_relu
        net = disc.features.net
        phi_by_hand = lrelu(net[3](lrelu(net[1]((2 * x - 1).flatten(1)), 0.2)), 0.2)
        assert torch.allclose(phi, phi_by_hand)
        assert torch.allclose(disc(x, y), expected, atol=1e-6)
        # only the projection term depends on y: changing one label moves only that example's score
        y2 = y.clone()
        y2[1] = 5
        delta = disc(x, y2) - disc(x, y)
        assert torch.allclose(delta[1], ((disc.embed.weight[5] - disc.embed.weight[3]) * phi[1]).sum(), atol=1e-6)
        assert torch.equal(delta[[0, 2, 3, 4, 5]], torch.zeros(5))


def test_spectral_projection_discriminator_runs():
    disc = ProjectionDiscriminator(num_classes=3, image_shape=(1, 4, 4), hidden=(8,), norm="spectral")
    assert disc(torch.rand(2, 1, 4, 4), torch.tensor([0, 2])).shape == (2,)


def test_conditional_generator_sites_and_labels():
    gen = ConditionalGenerator(num_classes=K, latent_dim=3, image_shape=(1, 2, 2), architecture="mlp", hidden=(8,))
    tr = poutine.trace(gen.model).get_trace(y=torch.tensor([2, 0, 1]))
    assert tr.nodes["y"]["is_observed"] and torch.equal(tr.nodes["y"]["value"], torch.tensor([2, 0, 1]))
    assert torch.equal(tr.nodes["x"]["value"], gen.generate(tr.nodes["z"]["value"], torch.tensor([2, 0, 1])))
    tr = poutine.trace(gen.model).get_trace(batch_size=5)
    assert not tr.nodes["y"]["is_observed"] and tr.nodes["y"]["value"].shape == (5,)
    assert gen.sample(4, y=3).shape == (4, 1, 2, 2)


def test_conditional_adversarial_scores_both_batches_with_the_real_labels():
    gen = ConditionalGenerator(num_classes=K, latent_dim=3, image_shape=(1, 2, 2), architecture="mlp", hidden=(8,))
    disc = ProjectionDiscriminator(num_classes=K, image_shape=(1, 2, 2), hidden=(8,))
    seen = []
    disc.register_forward_hook(lambda m, args, out: seen.append(args[1].clone()))
    for loss in ("nonsaturating", "wgan-gp"):
        gan = Adversarial(gen.model, disc, loss=loss, label="y")
        y = torch.tensor([0, 1, 2, 3, 3, 2])
        seen.clear()
        out = gan.step(PROTOTYPES[y], y=y)
        assert all(torch.isfinite(v) for v in out.values())
        assert len(seen) >= 3 and all(torch.equal(s, y) for s in seen)  # real, fake (penalty) and generator update
    with pytest.raises(
        DataError,
        match=r"^this Adversarial is conditional \(label='y'\): pass the real batch's "
        r"labels, step\(x, y=labels\)$",
    ):
        gan.step(PROTOTYPES[y])


def test_labels_outside_the_classes_are_one_line_errors():
    cvae = ConditionalVAE(num_classes=10, latent_dim=2, image_shape=(1, 2, 2), hidden=(8,))
    with pytest.raises(DataError) as e:
        cvae.sample(4, y=10)
    assert str(e.value) == "label 10 is outside the classes 0..9"
    disc = ProjectionDiscriminator(num_classes=10, image_shape=(1, 2, 2), hidden=(8,))
    with pytest.raises(DataError, match=r"^label -1 is outside the classes 0\.\.9$"):
        disc(torch.rand(2, 1, 2, 2), torch.tensor([3, -1]))
    with pytest.raises(DataError, match=r"^y must be an integer tensor of class labels, got torch.float32$"):
        cvae.guide(torch.rand(2, 1, 2, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(DataError, match=r"^y must hold one label per example: 2 examples, got 3 labels$"):
        cvae.guide(torch.rand(2, 1, 2, 2), torch.tensor([0, 1, 2]))


def test_cvae_model_and_guide_take_the_label_as_an_observed_input():
    cvae = ConditionalVAE(num_classes=K, latent_dim=2, image_shape=(1, 2, 2), hidden=(8,), likelihood="normal-fixed")
    x, y = PROTOTYPES[[0, 3]], torch.tensor([0, 3])
    guide_tr = poutine.trace(cvae.guide).get_trace(x, y)
    model_tr = poutine.trace(poutine.replay(cvae.model, trace=guide_tr)).get_trace(x, y)
    assert set(model_tr.stochastic_nodes) - {"data"} == {"z"} and model_tr.nodes["x"]["is_observed"]
    assert "y" not in model_tr.nodes  # an input, not a random variable
    # the decoder sees the label: the same z decodes to different means for different labels
    z = torch.zeros(1, 2)
    assert not torch.allclose(cvae.decode(z, torch.tensor([0])), cvae.decode(z, torch.tensor([1])))


def test_trained_cvae_samples_land_in_their_class(one_thread):
    """Four classes of 2x2 images (class k: pixel k at 0.9, the others at 0.1, noise sd 0.05).

    After 300 SVI steps, samples drawn for each label are assigned (nearest prototype) to that
    label at least 90% of the time; chance is 25%, and the untrained model is near it.
    """
    cvae = ConditionalVAE(num_classes=K, latent_dim=2, image_shape=(1, 2, 2), hidden=(32,), likelihood="normal-fixed")

    def accuracy():
        y = torch.arange(K).repeat_interleave(100)
        samples = cvae.sample(len(y), y)
        nearest = torch.cdist(samples.flatten(1), PROTOTYPES.flatten(1)).argmin(1)
        return (nearest == y).float().mean()

    assert accuracy() < 0.5
    svi = TorchSVI(cvae.model, cvae.guide, torch.optim.Adam(cvae.parameters(), lr=1e-2), pyro.infer.Trace_ELBO())
    for _ in range(300):
        y = torch.randint(K, (64,))
        svi.step(PROTOTYPES[y] + 0.05 * torch.randn(64, 1, 2, 2), y)
    assert accuracy() > 0.9


def test_conditional_adversarial_takes_one_label_tensor_per_batch_with_d_steps():
    gen = ConditionalGenerator(num_classes=K, latent_dim=3, image_shape=(1, 2, 2), architecture="mlp", hidden=(8,))
    disc = ProjectionDiscriminator(num_classes=K, image_shape=(1, 2, 2), hidden=(8,))
    seen = []
    disc.register_forward_hook(lambda m, args, out: seen.append(args[1].clone()))
    gan = Adversarial(gen.model, disc, loss="hinge", label="y", d_steps=2)
    y1, y2 = torch.tensor([0, 1, 2]), torch.tensor([3, 3, 0])
    gan.step([PROTOTYPES[y1], PROTOTYPES[y2]], y=[y1, y2])
    # first update: real and fake with y1; second: with y2; generator update: the last fakes, y2
    assert [s.tolist() for s in seen] == [y1.tolist()] * 2 + [y2.tolist()] * 3
    with pytest.raises(DataError, match=r"^pass one label tensor per real batch: 2 batch\(es\), y=Tensor$"):
        gan.step([PROTOTYPES[y1], PROTOTYPES[y2]], y=y1)
