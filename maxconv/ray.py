"""Augmentation on a Ray cluster: a Ray Data transform and the `--ray` job.

Install with ``pip install 'maxconv[ray]'``. Two ways in:

- :class:`Augment` is a callable class for ``Dataset.map_batches``: each
  actor holds one engine and the responses, and turns a batch of clips
  (``audio`` arrays) into augmented ones::

      ds = ray.data.from_items([{"id": name, "audio": clip, "sample_rate": 48000}, ...])
      wet = ds.map_batches(
          maxconv.ray.Augment,
          fn_constructor_kwargs={"responses": {"hall": hall, "room": room}, "mix": "0.2-0.6"},
          batch_size=64, concurrency=2, num_gpus=1,  # one GPU per actor
      )

  A ``response`` column names the response of each clip (a key of
  ``responses``, or a path); without it the response is drawn from the seed
  and the ``id`` column, as `maxconv augment` draws it from the clip's name.

- :func:`run_on_ray` runs a planned `maxconv augment` job (``--ray``): the
  driver cuts the clips into the same groups as a local run, actors read,
  compute and write them (the files must be on storage every node sees),
  and the driver appends the records to the same manifest in input order
  (each once every clip before it is done: on CPU actors a window's groups
  run in response order; see JobPlan.windows). The
  outputs are the same bytes as a local run's on the same kind of device.

Ray is started so that it never ships the working directory: under ``uv
run``, Ray 2.60 zips the current folder for the workers (from a dataset folder
that is a zip of the dataset: 78 GB written in seconds here), so that hook is
switched off (``RAY_ENABLE_UV_RUN_RUNTIME_ENV=0``), the runtime environment is
given explicitly, and a local Ray's object store is capped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .augment.group import LoadedClip, compute_group, finish_clip, run_group
from .augment.job import JobReport
from .augment.manifest import InputOrder, Manifest
from .augment.pairing import clip_rng
from .augment.plan import (
    AugmentOptions,
    JobPlan,
    Task,
    check_options,
    default_group_clips,
    default_window_clips,
)
from .augment.responses import ResponseBank, layout
from .errors import MaxconvError

if TYPE_CHECKING:
    from .engine import Engine

# A local Ray's shared-memory object store: groups travel as small JSON records.
OBJECT_STORE_BYTES = 512 * 2**20
INSTALL_HINT = "Ray is not installed; pip install 'maxconv[ray]' (with uv: uv add 'maxconv[ray]')"


def _import_ray():  # noqa: ANN202
    """Import Ray with its `uv run` working-directory upload switched off."""
    os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    try:
        import ray
        from ray._private import ray_constants
    except ImportError as exc:
        raise MaxconvError(INSTALL_HINT) from exc
    # Read when ray is first imported; set it too in case that was before us.
    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
    return ray


def runtime_env() -> dict:
    """The explicit runtime environment of maxconv's workers: variables, no working_dir."""
    env_vars = {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    for name in ("MAXCONV_CACHE_DIR", "XDG_CACHE_HOME"):
        if name in os.environ:
            env_vars[name] = os.environ[name]
    return {"env_vars": env_vars}


def start_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_memory: int = OBJECT_STORE_BYTES,
):  # noqa: ANN201
    """Connect to a Ray cluster, or start a local one, without shipping the current folder.

    Parameters
    ----------
    address
        A cluster's address (``ray://head:10001``, ``auto``); None uses
        ``RAY_ADDRESS`` if set, else starts Ray on this machine.
    num_cpus, object_store_memory
        For a local Ray only: its CPUs (default: all) and object store size.

    Returns
    -------
    module
        The ``ray`` module, initialized (an existing connection is kept).

    Raises
    ------
    MaxconvError
        If Ray is not installed.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    local = address is None and not os.environ.get("RAY_ADDRESS")
    options: dict = {
        "runtime_env": runtime_env(),
        "include_dashboard": False,
        "logging_level": logging.WARNING,
    }
    if local:
        # "local": a new instance here, never one that `ray start` left running.
        address = "local"
        options.update(num_cpus=num_cpus, object_store_memory=object_store_memory)
    ray.init(address=address, **options)
    return ray


class AugmentGroups:
    """The actor of `run_on_ray`: runs groups of tasks (JSON) from files to files."""

    def __init__(self, outdir: str, seed: int, options: dict, device: str) -> None:
        self.outdir = Path(outdir)
        self.seed = seed
        self.options = AugmentOptions(**options)
        self.device = device
        self.bank = ResponseBank()
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """This actor's engine, opened at its first group (not in a driver that builds it)."""
        if self._engine is None:
            from .engine import get_engine

            self._engine = get_engine(self.device)
        return self._engine

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = []
        for text in batch["group"]:
            tasks = [Task(**fields) for fields in json.loads(text)]
            records.append(
                json.dumps(
                    run_group(tasks, self.bank, self.options, self.outdir, self.seed, self.engine)
                )
            )
        return {"first": np.asarray(batch["first"]), "records": np.asarray(records, dtype=object)}


def _placement(device: str, cluster: Mapping[str, float], workers: int | None) -> tuple:
    """(actor device, actors, GPUs per actor, CPUs per actor) for the cluster's resources."""
    gpus = int(cluster.get("GPU", 0))
    cpus = max(1, int(cluster.get("CPU", 1)))
    wanted = device.strip().lower()
    if wanted.startswith("gpu") or (wanted == "auto" and gpus > 0):
        if gpus == 0:
            raise ValueError(f"device {device!r} asked for, but the Ray cluster has no GPU")
        # Each actor sees its own GPU as gpu:0 (Ray sets CUDA_VISIBLE_DEVICES).
        return "gpu", workers or gpus, 1, None
    actors = workers or 1
    return "cpu", actors, 0, max(1, cpus // actors)


def run_on_ray(
    plan: JobPlan,
    manifest: Manifest,
    address: str | None = None,
    workers: int | None = None,
    progress: Callable[[JobReport], None] | None = None,
) -> JobReport:
    """Run a planned augment job on Ray; the same manifest and outputs as `run_job`.

    Parameters
    ----------
    plan, manifest
        From `maxconv.augment.plan_job`.
    address
        The cluster (see `start_ray`); None: ``RAY_ADDRESS`` or a local Ray.
    workers
        Actors; default one per GPU of the cluster, else one (a CPU actor's
        op uses all the cores of its node).
    progress
        Called with the report after each group.

    Raises
    ------
    MaxconvError
        If Ray is not installed. Errors in an actor (not one clip's) come back
        as Ray's exceptions.
    """
    import time

    ray = start_ray(address)
    options = plan.options
    device, actors, gpus_per_actor, cpus_per_actor = _placement(
        options.device, ray.cluster_resources(), workers
    )
    plan.group_clips = options.group_clips or default_group_clips(device)
    plan.window_clips = options.window_clips or default_window_clips(device)
    report = JobReport(str(plan.outdir), [f"ray:{actors}x{device}"], plan.total, plan.skipped)
    started = time.perf_counter()
    steps = list(plan.groups())
    items = [
        {"first": group[0].index, "group": json.dumps([asdict(task) for task in group])}
        for group in steps
    ]
    order = InputOrder()
    if items:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        arguments = {
            "outdir": str(plan.outdir),
            "seed": plan.seed,
            "options": asdict(replace(options, device=device)),
            "device": device,
        }

        class Worker(AugmentGroups):
            # The arguments travel inside the class, not as constructor arguments in the
            # object store (which Ray warns about for restartable actors).
            def __init__(self) -> None:
                super().__init__(**arguments)

        dataset = ray.data.from_items(items).map_batches(
            Worker,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=gpus_per_actor,
            num_cpus=cpus_per_actor,
        )
        for group, row in zip(steps, dataset.iter_rows(), strict=True):
            records = json.loads(row["records"])
            manifest.append(order.add((task.index for task in group), records))
            report.add(records)
            report.seconds = time.perf_counter() - started
            if progress is not None:
                progress(report)
            if options.strict and report.failed:
                report.stopped = True
                break
        manifest.append(order.release())  # a window that --strict cut short
    report.seconds = time.perf_counter() - started
    return report


class Augment:
    """A Ray Data transform: a batch of clips through impulse responses, in memory.

    For ``Dataset.map_batches`` (a class, so each actor builds its engine and
    prepares the responses once); give ``num_gpus=1`` per actor on a GPU
    cluster and ``concurrency`` as the number of actors.

    Parameters
    ----------
    responses
        A mapping of name to taps (``(K,)`` or ``(channels, K)`` arrays, Ray
        object references to them, or paths of response files), or a sequence
        of paths. Arrays are taken at `response_rate` (None: the clip's rate).
    mix, length, align, normalize, seed, device, method
        As for `maxconv augment` (``mix`` a value or ``"low-high"``).
    response_rate
        Sample rate of the arrays in `responses`, for resampling them.

    Notes
    -----
    Batch columns read: ``audio`` (one array per clip, ``(frames,)`` or
    ``(channels, frames)``), ``sample_rate`` (optional: clips and responses
    then need the same rate), ``response`` (optional: drawn otherwise),
    ``id`` (the draw's key when ``response`` is absent), ``mix`` (optional).
    Returned: the batch with ``audio`` augmented (float32, the clip's shape),
    and ``response``, ``mix``, ``align_shift``, ``gain`` and ``error`` (empty
    when the clip went through) for each clip.
    """

    def __init__(
        self,
        responses: Mapping[str, object] | Sequence[str],
        *,
        mix: str | float = 1.0,
        length: str = "same",
        align: str = "peak",
        normalize: str = "input",
        seed: int = 0,
        device: str = "auto",
        method: str = "auto",
        response_rate: int | None = None,
    ) -> None:
        self.options = AugmentOptions(
            mix=mix,
            length=length,
            align=align,
            normalize=normalize,
            seed=seed,
            device=device,
            method=method,
        )
        self.mix = check_options(self.options)
        self.bank = ResponseBank()
        if isinstance(responses, Mapping):
            self.names = list(responses)
            for name, value in responses.items():
                if isinstance(value, (str, os.PathLike)):
                    self.names[self.names.index(name)] = os.fspath(value)
                    continue
                if type(value).__name__ == "ObjectRef":
                    value = _import_ray().get(value)
                self.bank.add(name, np.asarray(value), response_rate)
        else:
            self.names = [os.fspath(path) for path in responses]
        if not self.names:
            raise ValueError("responses is empty; give at least one response")
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """This actor's engine, opened at its first batch (not in a driver that builds it)."""
        if self._engine is None:
            from .engine import get_engine

            self._engine = get_engine(self.options.device)
        return self._engine

    def _pick(self, batch: Mapping[str, np.ndarray], row: int) -> tuple[str, float]:
        key = str(batch["id"][row]) if "id" in batch else None
        if "response" in batch:
            response = str(batch["response"][row])
        elif key is None:
            raise ValueError("a batch without a 'response' column needs an 'id' column to draw")
        else:
            response = self.names[int(clip_rng(self.options.seed, key).integers(len(self.names)))]
        if "mix" in batch:
            return response, float(batch["mix"][row])
        if self.mix.fixed or key is None:
            return response, self.mix.low
        return response, float(
            clip_rng(self.options.seed, key).uniform(self.mix.low, self.mix.high)
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = len(batch["audio"])
        loaded: list[LoadedClip] = []
        for row in range(count):
            response_key, mix = self._pick(batch, row)
            task = Task(row, str(batch["id"][row]) if "id" in batch else "", "", response_key, mix)
            data = np.atleast_2d(np.asarray(batch["audio"][row], dtype=np.float32))
            rate = int(batch["sample_rate"][row]) if "sample_rate" in batch else None
            try:
                response = self.bank.get(response_key, rate)
                kind = layout(response.taps.shape[0], data.shape[0], response_key)
                loaded.append(LoadedClip(task, data, None, response, kind))
            except MaxconvError as exc:
                loaded.append(LoadedClip(task, error=str(exc)))
        wets = compute_group(loaded, self.options, self.engine)
        audio, shifts, gains = [], [], []
        for clip, wet, original in zip(loaded, wets, batch["audio"], strict=True):
            if wet is None:
                audio.append(np.asarray(original, dtype=np.float32))
                shifts.append(0)
                gains.append(0.0)
                continue
            samples, shift, gain = finish_clip(clip, wet, self.options)
            audio.append(samples[0] if np.ndim(original) == 1 else samples)
            shifts.append(shift)
            gains.append(gain)
        out = dict(batch)
        column = np.empty(count, dtype=object)
        column[:] = audio
        out["audio"] = column
        out["response"] = np.asarray([clip.task.response for clip in loaded])
        out["mix"] = np.asarray([clip.task.mix for clip in loaded])
        out["align_shift"] = np.asarray(shifts)
        out["gain"] = np.asarray(gains)
        out["error"] = np.asarray([clip.error or "" for clip in loaded])
        return out
