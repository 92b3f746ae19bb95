"""Pick the device and CPU thread count from the `device` config group."""

from __future__ import annotations

import importlib.metadata
from typing import TYPE_CHECKING

from threadpoolctl import threadpool_limits

from runner_core.errors import DeviceError

if TYPE_CHECKING:
    import torch


class NumpyCPU:
    """The CPU through numpy alone: the device of runs on the numpy backend (algorithms whose
    `backend` is "numpy", and the numpy versions in `rl_runner.fast`). torch is never imported
    in such a run: its import takes about as long as training CartPole."""

    def __str__(self) -> str:
        return "cpu (numpy)"

    __repr__ = __str__


NUMPY_CPU = NumpyCPU()


def resolve_device(kind: str, threads: int, torch_free: bool = False) -> torch.device | NumpyCPU:
    """auto: cuda, then mps, then cpu. An explicit choice that is not available is an error.
    With `torch_free` (the run can go without torch), the CPU is `NUMPY_CPU`, and `auto` picks it
    without importing torch when the installed torch is a CPU-only build (version tag "+cpu").

    Also flushes denormal floats to zero on the CPU: Adam's moment estimates for parameters whose
    gradient stays 0 (dead ReLU units) decay into the denormal range, where x86 arithmetic is
    many times slower. Values below 1e-38 change no float32 weight, so results are unaffected.
    (On `NUMPY_CPU`, `NumpyAdam` flushes its own tiny moments instead.)

    `threads` applies to numpy's BLAS too (the CPU-side rollouts and the numpy backend's
    gradient steps run numpy products): OpenBLAS otherwise starts a thread per core, and on a
    busy machine its threads wait on each other."""
    threadpool_limits(limits=threads, user_api="blas")
    if torch_free and (kind == "cpu" or (kind == "auto" and _cpu_only_torch())):
        return NUMPY_CPU

    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    cuda = torch.cuda.is_available()
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if kind == "auto":
        kind = "cuda" if cuda else "mps" if mps else "cpu"
        return NUMPY_CPU if torch_free and kind == "cpu" else torch.device(kind)
    if kind == "cuda" and not cuda:
        built = "with" if torch.backends.cuda.is_built() else "without"
        raise DeviceError(
            "Config key 'device' is 'cuda', but CUDA is not available here (torch "
            f"{torch.__version__}, built {built} CUDA). "
            "Use device=cpu or device=auto, or install a CUDA build of torch "
            "(make install TORCH=... TORCH_INDEX=...)."
        )
    if kind == "mps" and not mps:
        raise DeviceError(
            "Config key 'device' is 'mps', but Apple's MPS backend is not available here. "
            "Use device=cpu or device=auto."
        )
    return torch.device(kind)


def _cpu_only_torch() -> bool:
    """Whether the installed torch is a CPU-only build, from its package version ("2.13.0+cpu"),
    read without importing it."""
    try:
        return importlib.metadata.version("torch").endswith("+cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
