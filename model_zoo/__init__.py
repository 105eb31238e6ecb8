"""Network definitions (discrete and integral) and a registry."""
from model_zoo.registry import create_model, list_models, register_model
# importing the entries registers them
from model_zoo import edsr, mnist_cnn, mnist_torch_cnn, resnet_small, srcnn  # noqa: F401
from model_zoo import mobilenet_v2, nin, resnet, vgg  # noqa: F401
from model_zoo import torch_zoo  # noqa: F401

__all__ = ["create_model", "list_models", "register_model"]
