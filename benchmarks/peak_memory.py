"""Peak resident memory of a block of code (Linux: VmHWM, reset through /proc/self/clear_refs)."""

from __future__ import annotations

import multiprocessing
import resource
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator


@dataclass
class PeakMemory:
    """Resident memory in bytes: before the block, and the peak during it (`peak` is the process's
    peak since start where the kernel cannot reset it; `exact` says which)."""

    before: int = 0
    peak: int = 0
    exact: bool = True

    @property
    def growth(self) -> int:
        """How far the block raised the resident memory above where it started."""
        return max(0, self.peak - self.before)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


@contextmanager
def peak_rss() -> Iterator[PeakMemory]:
    """Measure the peak resident set size during the `with` block."""
    result = PeakMemory()
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current RSS
    except OSError:
        result.exact = False
    try:
        result.before = _status_bytes("VmRSS")
    except OSError:
        result.exact = False
    yield result
    try:
        result.peak = _status_bytes("VmHWM")
    except OSError:
        result.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result.exact = False


def isolated_peak(prepare: Callable[..., Callable[[], object]], *args: object) -> dict[str, int]:
    """In a fresh (spawned) process: `call = prepare(*args)` loads what it needs, then the peak RSS
    of that process during `call()` and how far the call raised it (bytes). `prepare` must be a
    module-level function (it is pickled by name)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure_in_child, args=(queue, prepare, args))
    process.start()
    result = queue.get()
    process.join()
    if isinstance(result, str):
        raise RuntimeError(f"the isolated memory measurement failed: {result}")
    return result


def _measure_in_child(queue, prepare: Callable[..., Callable[[], object]], args: tuple) -> None:
    try:
        call = prepare(*args)
        with peak_rss() as memory:
            call()
        queue.put({"peak_rss": memory.peak, "rss_growth": memory.growth})
    except Exception as exc:  # noqa: BLE001 - reported to the parent as text
        queue.put(f"{type(exc).__name__}: {exc}")
