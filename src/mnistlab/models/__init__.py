"""Networks: plain ``nn.Module``s mapping (B, 1, 28, 28) images to (B, C) logits, with no training logic."""

from mnistlab.models.cnn import CNN
from mnistlab.models.mlp import MLP
from mnistlab.models.record_cnn import RecordCNN

__all__ = ["CNN", "MLP", "RecordCNN"]
