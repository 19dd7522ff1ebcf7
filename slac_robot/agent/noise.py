"""Where the agent's Gaussian noise comes from (the latent samples and the actor's actions).

By default from torch's global generator. A thread that updates beside another one (SLAC's
`concurrent_updates`) draws from a generator of its own instead, so that the two threads'
draws do not interleave by timing and a run stays the same bit for bit.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch

_thread = threading.local()


def standard_normal_like(x: torch.Tensor) -> torch.Tensor:
    """N(0, 1) noise of x's shape, dtype and device, from this thread's generator (see drawing_from)."""
    generator = getattr(_thread, "generator", None)
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


@contextlib.contextmanager
def drawing_from(generator: torch.Generator) -> Iterator[None]:
    """Within the block, this thread's standard_normal_like draws from `generator`."""
    previous = getattr(_thread, "generator", None)
    _thread.generator = generator
    try:
        yield
    finally:
        _thread.generator = previous
