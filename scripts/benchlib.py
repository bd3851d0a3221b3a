"""benchlib.py - what the PyTorch sides of the CPU benchmarks share
(scripts/bench_mnist_torch.py, scripts/bench_gpt_torch.py): the OpenBLAS that
torch loaded, the thread setting, the banner line, and the timed training
loop that matches mpitrain's `time: ... ms/step` line.

Imported by those two scripts (Python puts a script's own folder on sys.path
first). Imports torch only inside its functions, so that bench_gpt_torch.py's
sgemm mode still runs without it.
"""
import ctypes
import time

TIMING_SKIP = 5  # steps left out of ms/step, as in mpitrain (core/trainer.c)


def openblas():
    """The OpenBLAS that torch loaded (Debian's torch calls the system libblas.so.3), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {l.split()[-1] for l in f if "openblas" in l and l.split()[-1].startswith("/")}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)  # already loaded: same handle
            lib.openblas_get_config.restype = ctypes.c_char_p
            return lib
        except (OSError, AttributeError):
            continue
    return None


def set_threads(torch, threads):
    """torch.set_num_threads, and the same for torch's OpenBLAS (mpitrain sets OpenBLAS's
    threads too, parallel/threads.c). Returns that OpenBLAS, or None."""
    torch.set_num_threads(threads)
    _ = torch.zeros(1) @ torch.zeros(1)  # make torch load its BLAS before looking for it
    blas = openblas()
    if blas is not None:
        blas.openblas_set_num_threads(ctypes.c_int(threads))
    return blas


def banner(torch, threads, blas):
    """The first line both helpers print: torch version, threads, BLAS (bench scripts parse it)."""
    return "torch %s | %d thread(s) (torch.get_num_threads %d, interop %d) | BLAS %s" % (
        torch.__version__, threads, torch.get_num_threads(), torch.get_num_interop_threads(),
        blas.openblas_get_config().decode() if blas is not None else "unknown")


def train_timed(torch, opt, n, batch, steps, gen, loss_of, after_step=None):
    """Runs `steps` optimizer steps over n samples, `batch` a step, in a new order from
    torch.randperm(n, generator=gen) every epoch; loss_of(idx) is the forward and loss of
    the batch of sample indices idx. Timed like mpitrain's `time:` line: per step the batch
    gather (inside loss_of), forward, loss, backward, opt.step, zero_grad; the first
    TIMING_SKIP steps left out (all steps when there are no more). after_step(step, loss),
    when given, runs inside the timed loop (progress lines). Returns (ms per step, last loss)."""
    steps_per_epoch = n // batch
    order, order_epoch = None, -1
    t_start = time.perf_counter()
    t_timed = t_start
    loss = None
    for step in range(steps):
        if step == TIMING_SKIP:
            t_timed = time.perf_counter()
        epoch, b = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = torch.randperm(n, generator=gen), epoch
        loss = loss_of(order[b * batch:(b + 1) * batch])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(step, loss)
    t_end = time.perf_counter()
    timed = steps - TIMING_SKIP
    ms = 1e3 * ((t_end - t_timed) / timed if timed > 0 else (t_end - t_start) / steps)
    return ms, loss
