"""The network IR: construction, forward passes and conv lowering agree with torch."""

import numpy as np
import pytest
import torch

from lpbench.errors import ModelError
from lpbench.network import Conv2d, Network


def _torch_cnn(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, stride=1, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 3, 4, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 7), torch.nn.ReLU(), torch.nn.Linear(7, 5))


def test_from_torch_matches_torch_forward():
    seq = _torch_cnn()
    net = Network.from_torch(seq, (2, 8, 8))
    x = torch.rand(6, 2, 8, 8)
    assert net.shapes[-1] == (5,)
    np.testing.assert_allclose(net.forward(x).detach().numpy(), seq(x).detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(net.logits64(x.numpy()), seq.double()(x.double()).detach().numpy(), atol=1e-12)


@pytest.mark.parametrize("stride,padding,k", [(1, 0, 3), (1, 1, 3), (2, 1, 4), (2, 0, 2), (3, 2, 3)])
def test_conv_lowering_equals_conv(stride, padding, k):
    rng = np.random.default_rng(stride * 10 + padding)
    conv = Conv2d(rng.normal(size=(3, 2, k, k)).astype(np.float32), rng.normal(size=3).astype(np.float32),
                  stride, padding)
    in_shape = (2, 9, 7)
    mat = conv.to_sparse(in_shape)
    x = rng.normal(size=(4, *in_shape))
    ref = torch.nn.functional.conv2d(torch.as_tensor(x), torch.as_tensor(conv.weight, dtype=torch.float64),
                                     torch.as_tensor(conv.bias, dtype=torch.float64), stride=stride, padding=padding)
    got = x.reshape(4, -1) @ mat.T.toarray() + np.repeat(conv.bias, np.prod(conv.out_shape(in_shape)[1:]))
    np.testing.assert_allclose(got, ref.reshape(4, -1).numpy(), atol=1e-10)


def test_from_spec_uses_state_dict_indices():
    seq = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    params = {k: v.detach().numpy() for k, v in seq.state_dict().items()}
    net = Network.from_spec((3, 2, 2), ["flatten", "linear(6)", "relu", "linear(3)"], params)
    x = torch.rand(2, 3, 2, 2)
    np.testing.assert_allclose(net.forward(x).detach().numpy(), seq(x).detach().numpy(), atol=1e-6)


@pytest.mark.parametrize("layers,params,msg", [
    (["flatten", "linear(5)"], {"1.weight": np.zeros((4, 12)), "1.bias": np.zeros(4)}, "weight"),
    (["flatten", "linear(5)"], {}, "missing parameter"),
    (["flatten", "linear(5)", "swish"], {"1.weight": np.zeros((5, 12)), "1.bias": np.zeros(5)}, "unknown activation"),
    (["linear(5)"], {"0.weight": np.zeros((5, 12)), "0.bias": np.zeros(5)}, "expects input"),
])
def test_malformed_specs_raise_model_error(layers, params, msg):
    with pytest.raises(ModelError, match=msg):
        Network.from_spec((3, 2, 2), layers, params)


def test_input_shape_mismatch_is_a_model_error():
    net = Network.from_torch(_torch_cnn(), (2, 8, 8))
    with pytest.raises(ModelError, match="expects inputs of shape"):
        net.check_input_shape((1, 28, 28))
