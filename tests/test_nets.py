"""gflowzoo.nets: DCGAN layouts (official channel widths), the 28-px padding/cropping rule, init, MLPs, latents."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gflowzoo.errors import ConfigError
from gflowzoo.nets import MLP, DCGANDecoder, DCGANEncoder, MLPCritic, dcgan_init_, make_activation, sample_latent


def _convs(module: nn.Module, kind: type) -> list[int]:
    return [m.out_channels for m in module.modules() if type(m) is kind]


@pytest.mark.parametrize("side,enc,dec", [
    (32, [64, 128, 256, 10], [256, 128, 64, 3]),          # Li et al. 2017 at 32 px
    (64, [64, 128, 256, 512, 10], [512, 256, 128, 64, 3]),  # and at 64 px
    (8, [64, 10], [64, 3]),
])
def test_official_channel_layout(side, enc, dec):
    e = DCGANEncoder((3, side, side), 10)
    d = DCGANDecoder(10, (3, side, side))
    assert _convs(e, nn.Conv2d) == enc
    assert _convs(d, nn.ConvTranspose2d) == dec
    with torch.no_grad():
        x = d(torch.randn(2, 10))
    assert x.shape == (2, 3, side, side) and float(x.abs().max()) <= 1
    assert e(x).shape == (2, 10)


def test_28px_is_padded_and_cropped_32px():
    torch.manual_seed(0)
    d32, d28 = DCGANDecoder(5, (1, 32, 32), ngf=8), DCGANDecoder(5, (1, 28, 28), ngf=8)
    d28.load_state_dict(d32.state_dict())
    d32.eval(), d28.eval()
    z = torch.randn(3, 5)
    torch.testing.assert_close(d28(z), d32(z)[:, :, 2:30, 2:30])
    e32, e28 = DCGANEncoder((1, 32, 32), 4, ndf=8), DCGANEncoder((1, 28, 28), 4, ndf=8)
    e28.load_state_dict(e32.state_dict())
    e32.eval(), e28.eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(e28(x), e32(F.pad(x, (2, 2, 2, 2), mode="replicate")))


@torch.no_grad()
def test_dcgan_init_statistics():
    torch.manual_seed(0)
    e = DCGANEncoder((3, 64, 64), 16)
    convs = torch.cat([m.weight.flatten() for m in e.modules() if isinstance(m, nn.Conv2d)])
    assert abs(float(convs.std()) - 0.02) < 0.001 and abs(float(convs.mean())) < 0.001
    bn = torch.cat([m.weight for m in e.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(float(bn.mean()) - 1.0) < 0.005
    assert all(float(m.bias.abs().max()) == 0 for m in e.modules() if isinstance(m, nn.BatchNorm2d))
    lin = nn.Linear(200, 200)
    dcgan_init_(lin)  # linear layers untouched unless asked
    assert float(lin.weight.std()) > 0.03
    dcgan_init_(lin, linear=True)
    assert abs(float(lin.weight.std()) - 0.02) < 0.001


def test_encoder_without_batchnorm_has_biases():
    e = DCGANEncoder((1, 32, 32), 16, batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in e.modules())
    assert all(m.bias is not None for m in e.modules() if isinstance(m, nn.Conv2d))


def test_bad_shapes_are_config_errors():
    with pytest.raises(ConfigError, match="mlp-critic"):
        DCGANEncoder((2,), 4)
    with pytest.raises(ConfigError, match="square"):
        DCGANDecoder(4, (3, 32, 16))
    with pytest.raises(ConfigError, match="activation"):
        make_activation("swishy")


def test_mlp_and_critic_shapes():
    net = MLP(3, 12, [5, 7], "relu", "tanh", out_shape=(3, 2, 2))
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [5, 7, 12]
    with torch.no_grad():
        out = net(torch.randn(4, 3))
    assert out.shape == (4, 3, 2, 2) and float(out.abs().max()) <= 1
    c = MLPCritic((2,), 6, width=9, depth=2)
    assert c(torch.randn(5, 2), None).shape == (5, 6)


def test_sample_latent():
    a = sample_latent(1000, 3, torch.Generator().manual_seed(0), kind="uniform")
    assert float(a.min()) >= -1 and float(a.max()) <= 1 and abs(float(a.mean())) < 0.05
    b = sample_latent(1000, 3, torch.Generator().manual_seed(0), kind="normal")
    assert abs(float(b.std()) - 1) < 0.05
    torch.testing.assert_close(b, torch.randn(1000, 3, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ConfigError):
        sample_latent(2, 2, torch.Generator(), kind="cauchy")
