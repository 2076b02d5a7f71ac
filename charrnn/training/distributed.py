"""Training on several processes with torch.distributed (what ``torchrun`` starts).

``torchrun --nproc-per-node N -m charrnn train ...`` starts N copies of charrnn with the
variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; ``init`` joins
them into one process group: gloo for CPU tensors and NCCL for CUDA tensors, one GPU per
process. ``charrnn train --nproc N`` (``launch``) runs torchrun's own launcher in-process
for one machine. One process under torchrun trains without DDP (nothing to average);
CHARRNN_FORCE_DDP=1 wraps it anyway, so that the DDP path can be tested on one GPU.

How the work is shared (see training.py): the global batch of B streams is the same
(B, S) stream layout as in one process, and rank r trains rows [r*B/W, (r+1)*B/W) of it,
with its own carried hidden state. DistributedDataParallel averages the gradients, so
clipping, the optimizer step and the schedule are those of one process with batch B.
Rank 0 alone writes checkpoints, metrics and progress; validation runs on rank 0 and its
result is broadcast. Stop decisions (signals, the time budget) are taken together.

Everything a rank does alone is followed by ``agree``, so that an error on one rank ends
every rank with one clear message (from the rank that failed) instead of a hang.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from ..errors import CharrnnError, ConfigError

T = TypeVar("T")

# How long a rank waits in a collective for the others (rank 0 may be preparing a large
# corpus or training a tokenizer alone meanwhile).
TIMEOUT = datetime.timedelta(minutes=30)


class PeerFailed(CharrnnError):
    """Another process of the run failed and reports it itself; this one stops quietly."""


class PeerLost(CharrnnError):
    """Contact with another process of the run was lost (it died or was killed)."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank, world size and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True when a launcher (torchrun) started this process as one rank of a run."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise ConfigError(f"distributed launch: the environment variable {name} is not set")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"distributed launch: {name}={raw!r} is not an integer") from None


def init() -> DistContext:
    """Join the process group described by torchrun's environment variables.

    The group runs gloo for CPU tensors and, where torch sees a GPU, NCCL for CUDA
    tensors, so the device can be chosen afterwards (``use_device``: a resumed run keeps
    the device it was trained on), and small control messages never touch the GPU.
    """
    world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
    local_rank = _env_int("LOCAL_RANK", rank)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if not 0 <= rank < world:
        raise ConfigError(f"distributed launch: RANK={rank} is outside WORLD_SIZE={world}")
    if not dist.is_available():
        raise ConfigError("this build of torch has no torch.distributed")
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, timeout=TIMEOUT)
        except (RuntimeError, ValueError) as e:
            raise CharrnnError(f"cannot join the distributed run (rank {rank} of {world}): {first_line(e)}") from None
    return DistContext(rank, world, local_rank, local_world)


def use_device(ctx: DistContext, device: str) -> DistContext:
    """``ctx`` training on ``device`` (the run's --device): auto and cuda give each process
    the GPU of its local rank (NCCL); cpu, or auto without a GPU, the CPU (gloo)."""

    def choose() -> DistContext:
        if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise ConfigError("device cuda was asked for, but torch sees no CUDA GPU (use cpu or auto)")
            if ctx.local_rank >= torch.cuda.device_count():
                # Only the ranks beyond the GPU count meet this: theirs to report (a
                # ConfigError is reported by rank 0 alone).
                error = CharrnnError(too_many_for_gpus(ctx.local_world_size))
                error.exit_code = 2
                raise error
            dev = torch.device("cuda", ctx.local_rank)
            torch.cuda.set_device(dev)
            return dataclasses.replace(ctx, device=dev)
        if device not in ("auto", "cpu"):
            raise ConfigError(f"distributed training runs on cuda or cpu, not {device!r}")
        return dataclasses.replace(ctx, device=torch.device("cpu"))

    return each(ctx, choose)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(ctx: DistContext | None) -> Iterator[None]:
    """Leave the process group however the command ends."""
    try:
        yield
    finally:
        if ctx is not None:
            shutdown()


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    if not text:
        return type(e).__name__
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", text.splitlines()[0])  # the C++ source location
    return re.split(r"\.\s+(?=[A-Z])", text, maxsplit=1)[0].rstrip(".")  # the first sentence


_COMM_ERROR = re.compile(r"gloo|nccl|connection|peer|socket|process ?group|timed? ?out|broken pipe", re.I)


def is_comm_error(e: BaseException) -> bool:
    """Whether ``e`` is a failed collective (a peer died or hung) rather than a bug here."""
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(e, dist_error):
        return True
    return isinstance(e, RuntimeError) and bool(_COMM_ERROR.search(str(e)))


# --------------------------------------------------------------------------- collectives

def _collective(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except RuntimeError as e:
        if is_comm_error(e):
            raise PeerLost(f"lost contact with another process of the run ({first_line(e)})") from None
        raise


# Tensors are reduced where they are: CPU tensors through gloo (no GPU sync for control
# messages), CUDA tensors through NCCL (queued on the stream, no host sync).

def all_reduce(ctx: DistContext, values: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A reduced copy of a small tensor, over all ranks."""
    t = values.clone()
    red = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
    _collective(lambda: dist.all_reduce(t, op=red))
    return t


def all_gather(ctx: DistContext, t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's tensor (all of the same shape and dtype), in rank order."""
    src = t.contiguous()
    out = [torch.empty_like(src) for _ in range(ctx.world_size)]
    _collective(lambda: dist.all_gather(out, src))
    return out


def broadcast_bytes(ctx: DistContext, data: bytes | None) -> bytes:
    """Rank 0's ``data`` on every rank."""
    n = torch.tensor([len(data) if ctx.main and data is not None else 0], dtype=torch.long)
    _collective(lambda: dist.broadcast(n, 0))
    if not n.item():
        return b""
    if ctx.main:
        buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    else:
        buf = torch.empty(int(n.item()), dtype=torch.uint8)
    _collective(lambda: dist.broadcast(buf, 0))
    return buf.numpy().tobytes()


def agree(ctx: DistContext | None, error: BaseException | None) -> None:
    """Every rank says whether it failed; a failed rank re-raises its error, the others
    raise PeerFailed (the failed rank reports). Nothing happens when all succeeded."""
    if ctx is None:
        if error is not None:
            raise error
        return
    flag = all_reduce(ctx, torch.tensor([1 if error is not None else 0], dtype=torch.long), "max")
    if error is not None:
        raise error
    if flag.item():
        raise PeerFailed("another process of the run failed")


def main_first(ctx: DistContext | None, fn: Callable[[], T]) -> T | None:
    """Run ``fn`` on rank 0 alone (None elsewhere); every rank learns whether it failed."""
    if ctx is None:
        return fn()
    result, error = None, None
    if ctx.main:
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001 - every rank must hear of it, then it is re-raised
            error = e
    agree(ctx, error)
    return result


def each(ctx: DistContext | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank; if it fails on any, every rank stops (the failed ones say why)."""
    result, error = None, None
    try:
        result = fn()
    except BaseException as e:  # noqa: BLE001
        error = e
    agree(ctx, error)
    return result  # type: ignore[return-value]


_shared_dir: tempfile.TemporaryDirectory | None = None


def share_file(ctx: DistContext | None, path: Path | None, suffix: str = "") -> Path | None:
    """Rank 0's file ``path`` as a local file on every rank (the same path on rank 0).

    Checkpoints and tokenizers live on rank 0's machine; the other ranks, possibly on other
    machines, get a private copy of the bytes to load with the usual loaders.
    """
    global _shared_dir
    if ctx is None or ctx.world_size == 1:
        return path
    data = main_first(ctx, lambda: Path(path).read_bytes() if path is not None else None)
    data = broadcast_bytes(ctx, data)
    if ctx.main:
        return path
    if not data:
        return None
    if _shared_dir is None:
        _shared_dir = tempfile.TemporaryDirectory(prefix="charrnn-rank-")
    target = Path(_shared_dir.name) / f"shared{len(os.listdir(_shared_dir.name))}{suffix}"
    target.write_bytes(data)
    return target


def same_everywhere(ctx: DistContext | None, value: str) -> list[int]:
    """The ranks whose ``value`` (a short string such as a digest) differs from rank 0's."""
    if ctx is None or ctx.world_size == 1:
        return []
    raw = value.encode()[:64].ljust(64, b"\0")
    mine = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    everyone = all_gather(ctx, mine)
    return [r for r, v in enumerate(everyone) if not torch.equal(v, everyone[0])]


def too_many_for_gpus(nproc: int) -> str:
    return (f"{nproc} processes on this machine but torch sees {torch.cuda.device_count()} GPU(s): start at most "
            f"one process per GPU, or train on the CPU with --device cpu")


def check_batch(batch_size: int, world_size: int) -> None:
    """The global batch must split into equal shares (equal shares keep the gradient mean exact)."""
    if batch_size % world_size:
        raise ConfigError(f"batch size {batch_size} (the global batch) does not divide evenly among "
                          f"{world_size} processes")


# --------------------------------------------------------------------------- launching

def launch(nproc: int, argv: list[str]) -> int:
    """Run ``charrnn <argv>`` as ``nproc`` processes on this machine, as
    ``torchrun --standalone --nproc-per-node nproc -m charrnn <argv>`` would; the exit code.

    Each process gets cpu_count / nproc threads unless OMP_NUM_THREADS says otherwise.
    The ranks report their own errors; this returns rank 0's exit code (or the first
    failure's) without torchrun's own error report, or raises CharrnnError naming the
    processes that were killed by a signal (they could not report).
    """
    import logging
    import signal

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # The ranks report for themselves; torch's launcher would add its own warnings and tracebacks
    # (each of its loggers has its own level, so set them all).
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("torch.distributed") and isinstance(logger, logging.Logger):
            logger.setLevel(logging.CRITICAL)
    args = torchrun.parse_args(["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
                                "--max-restarts", "0", "--monitor-interval", "0.1", "-m", "charrnn", *argv])
    try:
        torchrun.run(args)
        return 0
    except ChildFailedError as e:
        # A process killed by a signal cannot say so itself (SIGTERM is the launcher's own
        # way of stopping the others); the rest reported their errors.
        killed = sorted((r, -f.exitcode) for r, f in e.failures.items() if f.exitcode < 0 and -f.exitcode != 15)
        if killed:
            names = [signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
                     for _, sig in killed]
            error = CharrnnError("; ".join(f"process {r} of {nproc} was killed by {n}"
                                           for (r, _), n in zip(killed, names)))
            error.exit_code = 128 + killed[0][1]
            raise error from None
        # The exit codes the processes chose (rank 0's first): the launcher's SIGTERM may
        # reach a process that was already on its way out with its own code.
        failures = e.failures
        chosen = {r: f.exitcode for r, f in failures.items() if f.exitcode > 0}
        if chosen:
            return chosen.get(0) or chosen[min(chosen, key=lambda r: (failures[r].timestamp, r))]
        return 128 + signal.SIGTERM
    except Exception as e:  # noqa: BLE001 - the launcher's own failures (ports, rendezvous)
        name = type(e).__name__
        if name == "SignalException":  # Ctrl-C or SIGTERM to the launcher: the ranks saved and said so
            sig = getattr(e, "sigval", signal.SIGINT)
            return 128 + int(sig)
        raise CharrnnError(f"could not start {nproc} processes: {first_line(e)}") from None
