"""Testing a trained classifier: the report of the test stage, its files and pictures."""

from mnistlab.evaluation.callbacks import SampleImages, TestReport
from mnistlab.evaluation.report import TestResult

__all__ = ["SampleImages", "TestReport", "TestResult"]
