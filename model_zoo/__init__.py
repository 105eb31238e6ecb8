"""Network definitions (discrete and integral) and a registry."""
from model_zoo.registry import create_model, list_models, register_model
from model_zoo import edsr, mnist_cnn, mnist_torch_cnn, resnet_small, srcnn  # noqa: F401  (register the models)

__all__ = ["create_model", "list_models", "register_model"]
