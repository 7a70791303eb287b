"""`maxconv augment`: a dataset through impulse responses (maxconv.augment, or maxconv.ray)."""

from __future__ import annotations

import functools
import json
import sys
from typing import Annotated

import typer

from .cli_errors import reported_errors, stderr
from .cli_progress import ProgressBar


def augment_command(
    clips: Annotated[
        list[str] | None,
        typer.Argument(
            help="Clips: audio files, .npy, folders (searched recursively) or lists "
            "(.txt/.csv/.jsonl). May be left out when --pairs lists them.",
            show_default=False,
        ),
    ] = None,
    responses: Annotated[
        list[str] | None,
        typer.Option(
            "--responses",
            "-r",
            help="Impulse responses: files, folders or lists (repeat the option for several).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="Output folder; names keep the clips' relative paths."),
    ] = "",
    pairs: Annotated[
        str | None,
        typer.Option(
            help="CSV/JSONL with a response (and optionally a mix) per clip, instead of draws; "
            "a run's manifest.jsonl works too."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the draws: the same seed gives the same outputs.")
    ] = 0,
    mix: Annotated[
        str, typer.Option(help="Wet share 0..1, or a range such as 0.2-0.6 drawn per clip.")
    ] = "1",
    length: Annotated[
        str, typer.Option(help="same (the clip's length) or tail (with the response's tail).")
    ] = "same",
    align: Annotated[
        str,
        typer.Option(
            help="peak (the response's largest sample lands on sample 0: delay compensation) "
            "or causal."
        ),
    ] = "peak",
    normalize: Annotated[
        str,
        typer.Option(help="none, peak (-0.1 dBFS) or input (the output keeps the clip's RMS)."),
    ] = "input",
    device: Annotated[
        str,
        typer.Option(
            "--device", "-d", help="auto, cpu, gpu, gpu:N, or gpu:all (every GPU of the host)."
        ),
    ] = "auto",
    method: Annotated[str, typer.Option(help="direct, fft or auto.")] = "auto",
    subtype: Annotated[
        str | None,
        typer.Option(help="Output subtype (PCM_16, FLOAT, ...); default: the clip's."),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option("--format", help="Output format (WAV, FLAC, NPY, ...); renames the suffix."),
    ] = None,
    rate: Annotated[int | None, typer.Option(help="Sample rate of .npy clips.")] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite outputs and the manifest.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(help="Skip the outputs the manifest lists as done; do the rest."),
    ] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first clip that fails.")] = False,
    group: Annotated[
        int | None,
        typer.Option(help="Clips per group (one compute step); default 256 on a GPU, 32 on CPU."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Reading and writing threads (default: a quarter of the cores when computing "
            "on the CPU, half of them with GPUs)."
        ),
    ] = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run on a Ray cluster (pip install 'maxconv[ray]'): a local one, or the one of "
            "--ray-address / RAY_ADDRESS.",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Address of the Ray cluster for --ray, e.g. ray://head:10001."),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(help="Ray actors (default: one per GPU of the cluster, else one)."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress and no summary.")
    ] = False,
    json_report: Annotated[
        bool, typer.Option("--json", help="Print a JSON report on stdout.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Augment a dataset: each clip through an impulse response, with a manifest.

    Responses are drawn per clip with --seed (or taken from --pairs), resampled
    to the clip's rate, applied per channel (mono, N-channel, or 4-channel true
    stereo on stereo clips). Exit code 3 if any clip failed.
    """
    report = None
    with reported_errors(debug):
        if not output:
            raise typer.BadParameter("give the output folder with -o/--output")
        if ray_address is not None and not ray:
            raise ValueError("--ray-address is the cluster of --ray; add --ray")
        from .augment import (
            AugmentOptions,
            open_engines,
            plan_job,
            resolve_devices,
            run_job,
            run_on_devices,
        )

        options = AugmentOptions(
            mix=mix,
            length=length,
            align=align,
            normalize=normalize,
            seed=seed,
            device=device,
            method=method,
            subtype=subtype,
            format=output_format,
            rate=rate,
            force=force,
            resume=resume,
            strict=strict,
            group_clips=group,
            workers=workers,
        )
        if not clips and pairs is None:
            raise ValueError("give clips (files, folders or lists), or --pairs with a list of them")
        if not responses and pairs is None:
            raise ValueError("give impulse responses with --responses (files, folders or lists)")
        plan, manifest = plan_job(clips or [], responses or [], output, options, pairs)
        bar = ProgressBar(not quiet, count=True, delay=0.0)
        task = bar.add("augment", total=plan.total, completed=plan.skipped)
        progress = functools.partial(_show_progress, bar, task, plan.skipped)
        try:
            if ray:
                from .ray import run_on_ray

                report = run_on_ray(
                    plan, manifest, address=ray_address, workers=ray_workers, progress=progress
                )
            elif len(devices := resolve_devices(device)) > 1:
                report = run_on_devices(plan, manifest, devices, progress=progress)
            else:
                report = run_job(plan, manifest, open_engines(device), progress=progress)
        finally:
            bar.stop()
            manifest.close()
        if not quiet:
            _print_summary(stderr, report, str(manifest.path))
        if json_report:
            sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    if report is not None and report.failed:
        raise typer.Exit(3)


def _show_progress(bar: ProgressBar, task: int, skipped: int, report) -> None:  # noqa: ANN001
    """Clips done (with those done before) and the rate, from a job's report so far."""
    done = report.done + report.failed
    rate = done / report.seconds if report.seconds else 0.0
    failed = f", {report.failed} failed" if report.failed else ""
    bar.update(task, completed=skipped + done, note=f"{rate:,.0f} clips/s{failed}")


def _print_summary(console, report, manifest_path: str) -> None:  # noqa: ANN001
    devices = ", ".join(report.devices)
    skipped = f", {report.skipped} done before" if report.skipped else ""
    line = (
        f"augmented {report.done} clip(s) into {report.outdir} ({report.failed} failed{skipped}) "
        f"in {report.seconds:.2f} s on {devices}: {report.clips_per_second:,.1f} clips/s"
    )
    if report.realtime:
        line += f", {report.realtime:,.0f}x realtime"
    console.print(line + f"; manifest {manifest_path}", soft_wrap=True, markup=False)
    if report.clipped_outputs:
        console.print(
            f"[yellow]warning:[/] {report.clipped_outputs} output(s) clipped; use "
            "--normalize peak or a float --subtype such as FLOAT",
            soft_wrap=True,
        )
    for failure in report.errors[:5]:
        console.print(f"[red]failed:[/] {failure['input']}: {failure['error']}", soft_wrap=True)
    if report.failed > 5:
        console.print(f"... and {report.failed - 5} more (the manifest's 'error' fields)")
    if report.stopped:
        console.print("[red]stopped[/] at the first failure (--strict)")
