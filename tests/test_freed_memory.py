"""A job's freed tensor memory is reused, not handed back to the kernel and faulted in again at the next step."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Allocates and frees a 40 MB tensor 50 times, as a step does with its activations, and prints the
# minor page faults that took (each fresh page the kernel maps is one).
CYCLES = """
import resource, sys, torch
from mnistlab.process.startup import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.ones(10_000_000)  # the first allocation faults in its pages either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    torch.ones(10_000_000).sum()  # (10M,) float32: 40 MB, above glibc's largest automatic mmap threshold
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", CYCLES, mode], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.split()[-1])


def glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


@pytest.mark.skipif(not glibc(), reason="glibc's malloc only")
def test_freed_tensor_memory_is_reused() -> None:
    default, kept = page_faults("default"), page_faults("keep")
    # 50 x 40 MB of 4 KB pages is about 500,000 faults when each block is mapped afresh; kept, the
    # count stays at the few blocks the first cycles add to the heap (20,000-50,000 measured).
    assert default > 250_000, default
    assert kept < default / 4, (kept, default)


def test_a_users_malloc_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistlab.process.startup import keep_freed_memory

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
