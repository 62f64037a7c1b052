"""Keeps ``torch.cuda.is_available()`` cheap where no NVIDIA driver is installed.

Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` when imported, so that asking whether CUDA
is available never initialises CUDA before a fork. torch then answers from NVML, loading
``libnvidia-ml.so.1`` on every call until CUDA is initialised. Without a driver the load
fails and torch falls back to the CUDA runtime's device count, the very answer it gives
without the variable, after a failed library search of some 45 us. ``torch.optim.Adam``
and ``AdamW`` ask on every ``step()`` (their graph-capture health check), so a CUDA build of
torch on a CPU-only machine paid that search on every optimizer step: about 8% of a
784-100-10 step at batch 32.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)
VARIABLE = "PYTORCH_NVML_BASED_CUDA_CHECK"


def skip_nvml_probe_without_driver() -> bool:
    """Sets the variable to 0 where NVML cannot be loaded, so the answer comes without the failed load.

    Call it after ``import lightning`` (which sets the variable). Where NVML loads, nothing
    changes: Lightning's fork-safe check stays on.

    Returns:
        True if the variable was changed.
    """
    if os.environ.get(VARIABLE) != "1":
        return False
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        os.environ[VARIABLE] = "0"
        log.debug("no NVML library: %s=0 (torch.cuda.is_available() asks the CUDA runtime directly)", VARIABLE)
        return True
    return False
