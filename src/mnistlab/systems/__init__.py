"""LightningModules: loss, metrics, optimizer and logging around a plain network."""

from mnistlab.systems.classifier import Classifier

__all__ = ["Classifier"]
