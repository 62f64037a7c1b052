"""Networks: plain ``nn.Module``s with no training logic."""

from mnistlab.models.mlp import MLP, build_model

__all__ = ["MLP", "build_model"]
