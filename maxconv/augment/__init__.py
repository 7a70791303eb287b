"""Dataset augmentation: many clips, each through an impulse response, file to file.

The work behind `maxconv augment` (and, on a Ray cluster, `maxconv.ray`):
`plan_job` finds and pairs the clips and responses and opens the manifest,
`open_engines` opens the devices once and `run_job` runs the plan on them;
`run_on_devices` runs it with one worker process per device (``gpu:all``).
"""

from __future__ import annotations

from .job import JobReport, open_engines, run_job
from .manifest import MANIFEST_NAME, Manifest, read_manifest
from .plan import AugmentOptions, JobPlan, Task, plan_job, resolve_devices
from .processes import run_on_devices

__all__ = [
    "MANIFEST_NAME",
    "AugmentOptions",
    "JobPlan",
    "JobReport",
    "Manifest",
    "Task",
    "open_engines",
    "plan_job",
    "read_manifest",
    "resolve_devices",
    "run_job",
    "run_on_devices",
]
