"""The MindSpore twin of the PyTorch CNN that the end-to-end demo starts from.

``scripts/make_torch_checkpoint.py`` defines ``TorchMnistNet`` in PyTorch,
trains it on the offline MNIST subset and ships its ``state_dict`` as
``model_zoo/checkpoints/mnist_torch_cnn.safetensors``
(:func:`bundled_checkpoint`). :class:`MnistTorchNet` is the same network as a
plain MindSpore Cell with the same attribute names, so the PyTorch keys map by
name (``inn_ms.convert.load_torch_weights`` renames BatchNorm
``weight/bias/running_mean/running_var`` to ``gamma/beta/moving_mean/
moving_variance``) and the outputs agree to float32 rounding.

Architecture (28×28 → 14×14 → 7×7)::

    conv1 (1→32)-bn1-ReLU, conv2 (32→32)-bn2-ReLU, maxpool 2,
    conv3 (32→64)-bn3-ReLU,
    [res_conv1 (64→64)-res_bn1-ReLU-res_conv2 (64→64)-res_bn2] + identity, ReLU,
    maxpool 2, conv4 (64→128)-bn4-ReLU, global average pool,
    fc1 (128→128)-ReLU, fc2 (128→classes)

Only standard cells/ops, and the residual add is an ordinary ``+``, so the
network traces cleanly in graph mode (channel groups are then found from the
graph by the converter).
"""
import os

from mindspore import nn, ops

from model_zoo.registry import register_model

CHECKPOINT_NAME = "mnist_torch_cnn.safetensors"
# Options of the integral zoo builders; meaningless for a plain network, accepted and ignored.
_INTEGRAL_ONLY = ("quadrature", "control_ratio")


def bundled_checkpoint():
    """Path of the shipped PyTorch checkpoint (a safetensors state_dict)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints", CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the bundled checkpoint is missing: {path} "
                                f"(make it with scripts/make_torch_checkpoint.py)")
    return path


def _conv3x3(cin, cout):
    return nn.Conv2d(cin, cout, 3, stride=1, pad_mode="pad", padding=1, has_bias=True)


def _bn(c):
    # MindSpore momentum 0.9 == PyTorch momentum 0.1; eps as PyTorch's default.
    return nn.BatchNorm2d(c, momentum=0.9, eps=1e-5)


class MnistTorchNet(nn.Cell):
    """Plain (discrete) twin of ``TorchMnistNet`` (see the module docstring)."""

    def __init__(self, num_classes=10, in_channels=1):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(in_channels, 32), _bn(32)
        self.conv2, self.bn2 = _conv3x3(32, 32), _bn(32)
        self.conv3, self.bn3 = _conv3x3(32, 64), _bn(64)
        self.res_conv1, self.res_bn1 = _conv3x3(64, 64), _bn(64)
        self.res_conv2, self.res_bn2 = _conv3x3(64, 64), _bn(64)
        self.conv4, self.bn4 = _conv3x3(64, 128), _bn(128)
        self.fc1 = nn.Dense(128, 128)
        self.fc2 = nn.Dense(128, num_classes)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def construct(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.pool(x)
        x = self.relu(self.bn3(self.conv3(x)))
        identity = x
        y = self.relu(self.res_bn1(self.res_conv1(x)))
        y = self.res_bn2(self.res_conv2(y))
        y = y + identity
        x = self.pool(self.relu(y))
        x = self.relu(self.bn4(self.conv4(x)))
        x = ops.mean(x, (2, 3))
        return self.fc2(self.relu(self.fc1(x)))


@register_model(input_shape=(1, 28, 28), plain=True)
def mnist_torch_cnn(num_classes=10, integral=False, checkpoint_torch=None, in_channels=1, **kw):
    """The plain twin of the PyTorch demo CNN.

    ``checkpoint_torch``: a PyTorch checkpoint (``.safetensors``, ``.npz``, or
    ``.pth``/``.pt`` with torch installed) to load, all parameters or none;
    ``"bundled"`` loads the shipped trained weights (:func:`bundled_checkpoint`).
    ``integral=True`` is refused: this network is meant to be converted.
    """
    if integral:
        raise ValueError("mnist_torch_cnn is a plain network for conversion: build it with integral=False "
                         "(e.g. create_model('mnist_torch_cnn', integral=False, checkpoint_torch='bundled')) "
                         "and convert the discrete network to an integral one with the converter "
                         "(inn_ms.convert)")
    kw = {k: v for k, v in kw.items() if k not in _INTEGRAL_ONLY}
    if kw:
        raise TypeError(f"mnist_torch_cnn: unexpected arguments {sorted(kw)}")
    net = MnistTorchNet(num_classes=num_classes, in_channels=in_channels)
    if checkpoint_torch is not None:
        from inn_ms.convert import load_torch_weights
        path = bundled_checkpoint() if checkpoint_torch == "bundled" else checkpoint_torch
        load_torch_weights(net, path)
    net.set_train(False)
    return net
