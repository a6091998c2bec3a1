"""Running an experiment: :func:`run_group` (one group trained or resumed, then summarised: the unit of work)
and :func:`run_experiment`, which runs the groups not done by an executor: ``local`` (in turn in this process, or
``jobs`` spawned processes at once) or ``ray`` (one Ray task per group, a local Ray or a cluster)."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import socket
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Sequence

import torch

from ..training import rundir, run as runs
from ..config import ConfigError
from ..numerics import configure_denormals
from ..files import atomic_write, clean_stale_tmp, is_tmp_name
from ..training.optim import resolve_device
from ..training.run import Run, check_memory
from .directory import SUMMARY, Experiment, Group, open_experiment
from .summary import summarise_run

EXECUTORS = ("local", "ray")


def run_group(out: str | Path, name: str, device: str = "auto", progress: bool = False) -> dict[str, Any]:
    """Train group ``name`` of the experiment in ``out`` (or resume it, or skip it when finished), then write its
    ``summary.parquet``. The unit of work of every executor (a Ray task runs exactly this). Returns
    ``{"group", "before", "seconds"}`` (``before``: its state when it started)."""
    t0 = time.perf_counter()
    exp = Experiment.load(out)
    g = exp.group(name)
    before, _ = g.state()
    if before == "new":
        check_new_group(g)
        if g.path.is_dir():  # what a trainer killed before writing config.json left: a stale lock, temporary files
            clean_stale_tmp(g.path)
            (g.path / runs.LOCK).unlink(missing_ok=True)
        run = runs.train(g.configs, g.path, device=device, progress=progress)
    elif before == "partial":
        run = runs.resume(g.path, device=device, progress=progress)
    else:
        run = Run.load(g.path)
    if before != "done":
        df = summarise_run(run, exp.name, g.name)
        atomic_write(g.path / SUMMARY, lambda t: df.to_parquet(t, index=False))
    return {"group": name, "before": before, "seconds": time.perf_counter() - t0}


def check_new_group(g: Group) -> None:
    """A group not started yet may have a folder only if it is empty or holds what a trainer killed before its
    first file left (a lock whose process is gone, temporary files). ConfigError naming the group and its
    folder's other files otherwise (the user's: moved away by the user, never deleted here). Writes nothing."""
    if not g.path.is_dir():
        if g.path.exists() or g.path.is_symlink():
            raise ConfigError(f"group={g.name!r} is invalid: {g.path} is not a folder; move it away, then rerun "
                              "the same command")
        return
    pid = rundir.lock_holder(g.path / runs.LOCK)
    if pid:
        raise ConfigError(f"group={g.name!r} is invalid: {g.path} is being trained by process {pid}")
    other = sorted(e.name for e in g.path.iterdir() if e.name != runs.LOCK and not is_tmp_name(e.name))
    if other:
        more = f" and {len(other) - 5} more" if len(other) > 5 else ""
        raise ConfigError(f"group={g.name!r} is invalid: its folder {g.path} holds files that are not grokscope's "
                          f"({', '.join(other[:5])}{more}) and no run; move them away, then rerun the same command")


def run_experiment(name: str, out: str | Path, *, epochs: int | None = None, tiny: bool = False,
                   executor: str = "local", address: str | None = None, device: str = "auto",
                   progress: bool = True, jobs: int = 1, seeds: Sequence[int] | None = None,
                   test_every: int | None = None) -> Experiment:
    """Run (or continue) experiment ``name`` into ``out``: every group not done is trained or resumed and
    summarised by ``executor`` (``local`` or ``ray``; ``address``: a Ray cluster, default a local Ray), then
    ``out/summary.parquet`` is written. ``jobs`` (local): groups trained at once, each in its own process with
    ``cpu_count // jobs`` torch threads (it pays when the groups are small beside the machine: many cores, or
    tiny models, whose products do not keep several threads busy). ``seeds``: only the models of these seeds.
    ``test_every``: evaluate the test set every that many epochs instead of the experiment's. Returns the
    :class:`Experiment`."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is invalid: must be one of {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise ConfigError("address is invalid with executor 'local': it is the Ray cluster of --executor ray")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device={device!r} is invalid: must be one of auto, cpu, cuda")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"jobs={jobs!r} is invalid: must be an integer >= 1")
    if jobs > 1 and executor != "local":
        raise ConfigError("jobs is invalid with executor 'ray': Ray schedules its tasks itself")
    # every check before anything is written: the plan and OUT, the device, the memory, Ray's address; a refused
    # command leaves OUT as it was, so the corrected command just works
    exp = open_experiment(Path(out), name, epochs, tiny, seeds, write=False, test_every=test_every)
    todo = [g.name for g in exp.groups if g.state()[0] != "done"]
    for g in exp.groups:
        if g.name in todo and g.state()[0] == "new":
            check_new_group(g)
    if todo and executor == "local":
        dev = resolve_device(device)
        for g in exp.groups:
            if g.name in todo:
                check_memory(g.configs, dev)
    if exp.added:
        print(f"{exp.path}: the experiment {name} has grown since this directory was started; adding "
              f"{', '.join(exp.added)}", flush=True)
    if todo and executor == "ray":
        with _ray_session(address, device, progress) as gpu:
            exp.save_plan()
            _run_ray(exp, todo, gpu, progress)
        exp.write_summary()
        return exp
    exp.save_plan()
    if todo:
        if jobs > 1 and len(todo) > 1:
            _run_pool(exp, todo, device, progress, min(jobs, len(todo)))
        else:
            _run_local(exp, todo, device, progress)
    exp.write_summary()
    return exp


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="group", disable=not progress, dynamic_ncols=True, position=0)


def _run_local(exp: Experiment, todo: list[str], device: str, progress: bool) -> None:
    with _bar(len(exp.groups), f"experiment {exp.name}", progress) as bar:
        bar.update(len(exp.groups) - len(todo))
        for name in todo:
            bar.set_postfix_str(f"group {name}", refresh=True)
            run_group(exp.path, name, device, progress)
            bar.update(1)


def _pool_worker(threads: int) -> None:
    """A pool process's set-up, before any torch work: its share of the cores, denormals flushed in every
    worker thread (as ``grokscope train`` does first thing)."""
    torch.set_num_threads(threads)
    configure_denormals(True)


def _run_pool(exp: Experiment, todo: list[str], device: str, progress: bool, jobs: int) -> None:
    """``jobs`` groups at a time, each :func:`run_group` in a fresh (spawned) process; a progress bar over groups.
    A failed group stops the experiment with its error once the running groups have finished (each keeps its
    last checkpoint, so a rerun resumes them)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process whose torch threads may have started
    path = str(exp.path.resolve())
    with _bar(len(exp.groups), f"experiment {exp.name} ({jobs} jobs)", progress) as bar, \
            ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_pool_worker, initargs=(threads,)) as pool:
        bar.update(len(exp.groups) - len(todo))
        futures = {pool.submit(run_group, path, n, device, False): n for n in todo}
        error = None
        try:
            for f in as_completed(futures):
                try:
                    f.result()
                except Exception as e:  # noqa: BLE001 - kept, re-raised after the others
                    error = error or e
                    continue
                bar.set_postfix_str(f"group {futures[f]} done", refresh=True)
                bar.update(1)
        except KeyboardInterrupt:  # Ctrl-C or `kill`: each running group saves its state (SIGTERM) and stops
            for f in futures:
                f.cancel()
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()  # SIGTERM: runs.train stops between two steps and saves, as for `grokscope train`
            raise
        if error is not None:
            raise error


@contextlib.contextmanager
def _ray_session(address: str | None, device: str, progress: bool):
    """Ray started (``address=None``) or connected to, within seconds or one line naming the address; yields whether
    the groups run on GPUs (``device="cuda"`` on a cluster without GPUs: refused). Ray's own log lines are quiet
    unless ``GROKSCOPE_RAY_LOG=1``. Shut down on exit if started here."""
    try:
        import ray  # the optional extra grokscope[ray]
    except ImportError:
        raise ConfigError("executor='ray' needs Ray: pip install 'grokscope[ray]'") from None
    started = not ray.is_initialized()
    if started:
        if address is not None:
            _check_reachable(address)
        verbose = os.environ.get("GROKSCOPE_RAY_LOG") == "1"
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=progress and verbose,
                     logging_level=logging.INFO if verbose else logging.ERROR,
                     configure_logging=True)
        except Exception as e:  # ConnectionError, an authentication error, ...: one line naming the address
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"address={address!r} is invalid: Ray could not "
                              f"{'start' if address is None else 'connect'}: {msg}") from None
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if device == "cuda" and gpus <= 0:
            raise ConfigError(f"device='cuda' is invalid: the Ray cluster{'' if address is None else ' at ' + address}"
                              " has no GPU (use auto or cpu)")
        yield device == "cuda" or (device == "auto" and gpus > 0)
    finally:
        if started:
            ray.shutdown()


#: seconds to wait for a Ray address to answer before giving up (Ray itself retries for minutes)
RAY_CONNECT_TIMEOUT_S = 10.0


def _check_reachable(address: str) -> None:
    """ConfigError within :data:`RAY_CONNECT_TIMEOUT_S` seconds unless ``address`` (``HOST:PORT``,
    ``ray://HOST:PORT`` or ``auto``/``local``) is well formed and something listens there."""
    if address in ("auto", "local"):
        return
    m = re.fullmatch(r"(?:(ray|rays)://)?\[?([A-Za-z0-9.\-_:]+?)\]?:(\d{1,5})/?", address)
    if m is None or not 0 < int(m.group(3)) < 65536:
        raise ConfigError(f"address={address!r} is invalid: must be HOST:PORT (a cluster's GCS, e.g. 10.0.0.1:6379), "
                          "ray://HOST:PORT (Ray Client, e.g. ray://head:10001), auto or local")
    host, port = m.group(2), int(m.group(3))
    try:
        socket.create_connection((host, port), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as e:
        why = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e) or type(e).__name__)
        raise ConfigError(f"address={address!r} is invalid: nothing answers at {host}:{port} ({why}); is the Ray "
                          "cluster running there?") from None


def _run_ray(exp: Experiment, todo: list[str], gpu: bool, progress: bool) -> None:
    import ray
    task = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_retries=2)(run_group)
    path = str(exp.path.resolve())
    pending = {task.remote(path, n, "cuda" if gpu else "cpu", False): n for n in todo}
    with _bar(len(exp.groups), f"experiment {exp.name} (ray)", progress) as bar:
        bar.update(len(exp.groups) - len(todo))
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                ray.get(ref)  # re-raises a task's error here
                bar.set_postfix_str(f"group {pending.pop(ref)} done", refresh=True)
                bar.update(1)
