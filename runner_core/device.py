"""Pick the torch device and CPU thread count from the `device` config group."""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_limits

from runner_core.errors import DeviceError


def resolve_device(kind: str, threads: int) -> torch.device:
    """auto: cuda, then mps, then cpu. An explicit choice that is not available is an error.

    Also flushes denormal floats to zero on the CPU: Adam's moment estimates for parameters whose
    gradient stays 0 (dead ReLU units) decay into the denormal range, where x86 arithmetic is
    ~30x slower (an Adam step of DQN's 256x256 network: 1.7 ms instead of 0.05 ms). Values below
    1e-38 change no float32 weight, so results are unaffected.

    `threads` applies to numpy's BLAS too (the CPU-side rollouts and PPO's gradient steps run
    numpy products): OpenBLAS otherwise starts a thread per core, and on a busy 2-core machine
    its threads waiting on each other made whole PPO runs ~40% slower."""
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")
    torch.set_flush_denormal(True)
    cuda = torch.cuda.is_available()
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if kind == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
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
