"""Adam's per-step CUDA check does not search for a missing NVIDIA driver library."""

from __future__ import annotations

import ctypes

import lightning  # noqa: F401  (sets PYTORCH_NVML_BASED_CUDA_CHECK=1, as in every run)
import pytest
import torch

from mnistlab.process.startup import NVML_VARIABLE, skip_nvml_probe_without_driver


def nvml_loads() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def adam_library_loads(monkeypatch: pytest.MonkeyPatch, steps: int = 5) -> int:
    """How many shared libraries ``steps`` Adam steps try to load."""
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(net.parameters())
    loads = []
    real = ctypes.CDLL

    def counting(name, *args, **kwargs):
        loads.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", counting)
    for _ in range(steps):
        net(torch.ones(3, 4)).sum().backward()
        opt.step()
    monkeypatch.setattr(ctypes, "CDLL", real)
    return len(loads)


def test_adam_steps_load_no_library_after_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NVML_VARIABLE, "1")  # as `import lightning` leaves it
    available = torch.cuda.is_available()
    if nvml_loads():  # a machine with the driver: Lightning's fork-safe check stays as it is
        assert skip_nvml_probe_without_driver() is False
        assert torch.cuda.is_available() == available
        return
    assert adam_library_loads(monkeypatch) >= 5  # the failed search, once per step
    assert skip_nvml_probe_without_driver() is True
    assert torch.cuda.is_available() == available  # the same answer
    assert adam_library_loads(monkeypatch) == 0


def test_a_variable_set_otherwise_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NVML_VARIABLE, "0")
    assert skip_nvml_probe_without_driver() is False
    monkeypatch.delenv(NVML_VARIABLE)
    assert skip_nvml_probe_without_driver() is False
