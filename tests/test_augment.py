"""`maxconv augment`: discovery, pairing, responses, the job's options, manifest, resume.

Most tests run the job with a stand-in for `convolve_batch_on` (scipy, row by row),
so they check the job's own logic (pairing, padding and slicing, layouts, mixing,
normalization, files, manifest) against an independent reference built from
scipy's full convolution; a few run the real engine on the CPU end to end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import soxr
from typer.testing import CliRunner

import maxconv
from maxconv.augment import AugmentOptions, plan_job, read_manifest, run_job
from maxconv.augment.discovery import find_entries, read_list
from maxconv.augment.pairing import draw_pairs, parse_mix
from maxconv.augment.plan import output_name, resolve_devices
from maxconv.augment.responses import ResponseBank, layout, peak_index
from maxconv.cli import app
from maxconv.errors import InputError, KernelError, MaxconvError, OutputError

runner = CliRunner()
PACKAGE_ROOT = str(Path(maxconv.__file__).resolve().parent.parent)  # for child processes
RATE = 16000
LSB = 1 / 32768


# Helpers -------------------------------------------------------------------------------


class FakeEngine:
    """What the job asks of an engine when `fake_convolve` computes: its name and kind."""

    def __init__(self, label: str = "cpu") -> None:
        self.label = label
        self.kind = "cpu" if label == "cpu" else "gpu"


def fake_convolve(engine, signals, kernels, mode="full", *, method="auto"):
    """convolve_batch_on's contract, computed by scipy in float64."""
    return [
        scipy.signal.convolve(np.float64(s), np.float64(k), mode).astype(np.float32)
        for s, k in zip(signals, kernels, strict=True)
    ]


def write(path: Path, data: np.ndarray, rate: int = RATE, subtype: str = "FLOAT") -> Path:
    """Write (channels, frames) samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, data)
    else:
        sf.write(path, np.asarray(data).T, rate, subtype=subtype)
    return path


def decoded(path: Path) -> np.ndarray:
    data, _ = sf.read(path, dtype="float64", always_2d=True)
    return data.T


def noise(rng: np.random.Generator, channels: int, frames: int, scale: float = 0.1) -> np.ndarray:
    return (rng.standard_normal((channels, frames)) * scale).astype(np.float32)


def room(rng: np.random.Generator, channels: int, taps: int, peak_at: int = 30) -> np.ndarray:
    """A decaying response whose largest sample is at `peak_at` in channel 0."""
    h = rng.standard_normal((channels, taps)) * np.exp(-np.arange(taps) / (taps / 6)) * 0.2
    h[:, :peak_at] *= 0.01
    h[0, peak_at] = 1.0
    return h.astype(np.float32)


def reference(x, h, *, mix=1.0, length="same", align="peak", normalize="input"):
    """The augmented clip from scipy's full convolution, per the documented semantics."""
    x = np.float64(x)
    h = np.float64(h)
    channels, frames = x.shape
    if h.shape[0] == 1:
        wet = np.stack([scipy.signal.convolve(x[c], h[0]) for c in range(channels)])
    elif h.shape[0] == channels:
        wet = np.stack([scipy.signal.convolve(x[c], h[c]) for c in range(channels)])
    else:  # true stereo: LL, LR, RL, RR
        conv = scipy.signal.convolve
        wet = np.stack([conv(x[0], h[0]) + conv(x[1], h[2]), conv(x[0], h[1]) + conv(x[1], h[3])])
    shift = int(np.argmax(np.max(np.abs(h), axis=0))) if align == "peak" else 0
    count = frames if length == "same" else frames + h.shape[1] - 1 - shift
    wet = wet[:, shift : shift + count]
    dry = np.zeros_like(wet)
    dry[:, : min(frames, count)] = x[:, :count]
    out = (1 - mix) * dry + mix * wet
    if normalize == "peak":
        out *= 10 ** (-0.1 / 20) / np.max(np.abs(out))
    elif normalize == "input":
        out *= np.sqrt(np.mean(x**2) / np.mean(out**2))
    return out, shift


def run(clips, responses, outdir, pairs=None, convolve=fake_convolve, **options):
    """Plan and run a job in this process; the report and the manifest's records."""
    options.setdefault("device", "cpu")
    plan, manifest = plan_job(clips, responses, outdir, AugmentOptions(**options), pairs)
    with manifest:
        report = run_job(plan, manifest, [FakeEngine()], convolve=convolve)
    return report, read_manifest(Path(outdir) / "manifest.jsonl")[0]


def lines(outdir: Path) -> list[dict]:
    text = (Path(outdir) / "manifest.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def dataset(tmp_path: Path) -> dict:
    """Clips in nested folders (mono and stereo, PCM_16) and three responses."""
    rng = np.random.default_rng(7)
    clips = tmp_path / "clips"
    for index in range(6):
        channels = 2 if index % 2 else 1
        folder = clips / "sub" if index >= 4 else clips
        write(folder / f"c{index}.wav", noise(rng, channels, 3000 + 250 * index), subtype="PCM_16")
    rirs = tmp_path / "rirs"
    write(rirs / "a.wav", room(rng, 1, 400, peak_at=25))
    write(rirs / "b.wav", room(rng, 1, 700, peak_at=60))
    write(rirs / "c.npy", room(rng, 1, 300, peak_at=0))
    return {"root": tmp_path, "clips": clips, "rirs": rirs, "rng": rng}


# Discovery ------------------------------------------------------------------------------


class TestDiscovery:
    def test_folders_are_searched_recursively_in_sorted_order(self, dataset):
        write(dataset["clips"] / ".hidden.wav", np.zeros((1, 10), np.float32))
        (dataset["clips"] / "notes.md").write_text("not audio")
        names = [entry.name for entry in find_entries([str(dataset["clips"])])]
        assert names == ["c0.wav", "c1.wav", "c2.wav", "c3.wav", "sub/c4.wav", "sub/c5.wav"]

    def test_the_output_folder_inside_an_input_folder_is_not_searched(self, dataset):
        write(dataset["clips"] / "out" / "old.wav", np.zeros((1, 10), np.float32))
        entries = find_entries([str(dataset["clips"])], exclude=dataset["clips"] / "out")
        assert "out/old.wav" not in [entry.name for entry in entries]

    def test_a_file_keeps_its_name_and_a_missing_path_is_refused(self, dataset):
        (entry,) = find_entries([str(dataset["clips"] / "sub" / "c4.wav")])
        assert entry.name == "c4.wav"
        with pytest.raises(InputError, match="no such file"):
            find_entries([str(dataset["root"] / "nowhere")])

    def test_lists_text_csv_and_jsonl_resolve_from_their_folder(self, dataset):
        root = dataset["root"]
        (root / "list.txt").write_text("# clips\nclips/c0.wav\n\nclips/sub/c4.wav\n")
        (root / "list.csv").write_text("path,response,mix\nclips/c1.wav,rirs/a.wav,0.25\n")
        (root / "list.jsonl").write_text(
            json.dumps({"clip": "clips/c2.wav", "response": "rirs/b.wav"}) + "\n" + '"c3.wav"\n'
        )
        text = read_list(root / "list.txt")
        assert [(e.path, e.name) for e in text] == [
            (str(root / "clips/c0.wav"), "clips/c0.wav"),
            (str(root / "clips/sub/c4.wav"), "clips/sub/c4.wav"),
        ]
        (csv_entry,) = read_list(root / "list.csv")
        assert csv_entry.response == str(root / "rirs/a.wav") and csv_entry.mix == 0.25
        first, second = read_list(root / "list.jsonl")
        assert first.response == str(root / "rirs/b.wav") and second.name == "c3.wav"

    def test_csv_without_header_is_path_response_mix(self, tmp_path):
        (tmp_path / "pairs.csv").write_text("/data/x.wav,/rirs/r.wav,0.5\n")
        (entry,) = read_list(tmp_path / "pairs.csv")
        assert (entry.path, entry.name, entry.response, entry.mix) == (
            "/data/x.wav",
            "x.wav",
            "/rirs/r.wav",
            0.5,
        )

    def test_clips_that_would_share_an_output_are_refused(self, dataset):
        other = write(dataset["root"] / "more" / "c0.wav", np.zeros((1, 100), np.float32))
        with pytest.raises(InputError, match="would both be written"):
            run([str(dataset["clips"] / "c0.wav"), str(other)], [str(dataset["rirs"])],
                dataset["root"] / "out")  # fmt: skip

    def test_format_renames_the_suffix(self):
        assert output_name("a/b.wav", "flac") == "a/b.flac"
        assert output_name("a/b.wav", None) == "a/b.wav"
        assert output_name("noext", "NPY") == "noext.npy"


# Pairing --------------------------------------------------------------------------------


class TestPairing:
    def test_draws_depend_on_seed_and_name_only(self, dataset):
        clips = find_entries([str(dataset["clips"])])
        responses = [f"r{i}" for i in range(50)]
        mix = parse_mix("0.2-0.6")
        first = draw_pairs(clips, responses, mix, seed=3)
        again = draw_pairs(list(reversed(clips[1:])), responses, mix, seed=3)
        by_name = {pair.clip.name: (pair.response, pair.mix) for pair in first}
        assert all(by_name[p.clip.name] == (p.response, p.mix) for p in again)
        other = draw_pairs(clips, responses, mix, seed=4)
        assert [p.response for p in other] != [p.response for p in first]
        assert all(0.2 <= p.mix <= 0.6 for p in first)
        assert len({p.mix for p in first}) == len(first)

    def test_a_fixed_mix_and_bad_mixes(self):
        assert parse_mix("0.3").fixed and parse_mix(0.3).low == 0.3
        for bad in ("1.5", "0.6-0.2", "wet", "-0.1"):
            with pytest.raises(ValueError, match="--mix"):
                parse_mix(bad)

    def test_pairs_file_gives_responses_and_mixes(self, dataset):
        root = dataset["root"]
        (root / "pairs.csv").write_text(
            "clip,response,mix\nclips/c0.wav,rirs/b.wav,0.5\nclips/c1.wav,rirs/a.wav,\n"
        )
        report, records = run([], [], root / "out", pairs=str(root / "pairs.csv"), mix="0.3")
        assert report.done == 2
        assert records["clips/c0.wav"]["response"] == str(root / "rirs/b.wav")
        assert records["clips/c0.wav"]["mix"] == 0.5
        assert records["clips/c1.wav"]["mix"] == 0.3

    def test_clips_missing_from_the_pairs_file_are_refused(self, dataset):
        root = dataset["root"]
        (root / "pairs.csv").write_text("clip,response\nclips/c0.wav,rirs/b.wav\n")
        with pytest.raises(InputError, match="not in the pairs file"):
            run([str(dataset["clips"])], [], root / "out", pairs=str(root / "pairs.csv"))

    def test_a_manifest_as_pairs_reproduces_the_run(self, dataset):
        root = dataset["root"]
        run([str(dataset["clips"])], [str(dataset["rirs"])], root / "one", mix="0.1-0.9", seed=5)
        run([], [], root / "two", pairs=str(root / "one" / "manifest.jsonl"))
        assert (root / "one/manifest.jsonl").read_text().replace("/one/", "/two/") == (
            root / "two/manifest.jsonl"
        ).read_text().replace('"seed": 0', '"seed": 5')
        for name in ("c0.wav", "c3.wav", "sub/c5.wav"):
            assert (root / "one" / name).read_bytes() == (root / "two" / name).read_bytes()


# Responses ------------------------------------------------------------------------------


class TestResponses:
    def test_layouts(self):
        assert layout(1, 2) == "mono"
        assert layout(2, 2) == "per-channel"
        assert layout(4, 2) == "true-stereo"
        assert layout(6, 6) == "per-channel"
        with pytest.raises(KernelError, match="true-stereo"):
            layout(3, 2)
        with pytest.raises(KernelError, match="has 2 channels but the clip has 1"):
            layout(2, 1)

    def test_resampling_once_per_rate_with_soxr_keeping_the_gain(self, tmp_path):
        rng = np.random.default_rng(1)
        h = room(rng, 2, 441, peak_at=40)
        path = str(write(tmp_path / "r.wav", h, rate=44100))
        bank = ResponseBank()
        got = bank.get(path, 48000)
        assert bank.get(path, 48000) is got
        expected = soxr.resample(h.T, 44100, 48000, quality="HQ").T * (44100 / 48000)
        np.testing.assert_allclose(got.taps, expected, rtol=1e-5, atol=1e-7)
        assert (got.rate, got.source_rate) == (48000, 44100)
        assert got.peak == peak_index(got.taps)
        assert bank.get(path, 44100).taps.shape == h.shape

    def test_npy_responses_are_used_at_the_clips_rate(self, tmp_path):
        h = np.arange(1.0, 6.0)
        bank = ResponseBank()
        got = bank.get(str(write(tmp_path / "r.npy", h)), 48000)
        np.testing.assert_array_equal(got.taps, [h])
        assert got.source_rate is None

    def test_bad_responses_are_kernel_errors_remembered(self, tmp_path):
        (tmp_path / "bad.wav").write_bytes(b"RIFF nonsense")
        bank = ResponseBank()
        for _ in range(2):
            with pytest.raises(KernelError, match="bad.wav"):
                bank.get(str(tmp_path / "bad.wav"), RATE)
        with pytest.raises(KernelError, match="NaN"):
            bank.get(str(write(tmp_path / "nan.npy", np.array([1.0, np.nan]))), None)


# The job's semantics --------------------------------------------------------------------


class TestSemantics:
    @pytest.mark.parametrize("length", ["same", "tail"])
    @pytest.mark.parametrize("align", ["peak", "causal"])
    @pytest.mark.parametrize("normalize", ["none", "peak", "input"])
    def test_against_scipy(self, tmp_path, length, align, normalize):
        rng = np.random.default_rng(2)
        x = noise(rng, 2, 2000)
        h = room(rng, 1, 300, peak_at=45)
        write(tmp_path / "x.wav", x)
        write(tmp_path / "h.wav", h)
        _, records = run([str(tmp_path / "x.wav")], [str(tmp_path / "h.wav")], tmp_path / "out",
                         mix=0.7, length=length, align=align, normalize=normalize)  # fmt: skip
        expected, shift = reference(x, h, mix=0.7, length=length, align=align, normalize=normalize)
        got = decoded(tmp_path / "out" / "x.wav")
        assert got.shape == expected.shape
        assert got.shape[1] == (2000 if length == "same" else 2000 + 299 - shift)
        np.testing.assert_allclose(got, expected, atol=2e-6 * np.max(np.abs(expected)) + 1e-7)
        record = records["x.wav"]
        assert record["align_shift"] == shift == (45 if align == "peak" else 0)
        assert record["frames"] == got.shape[1] and record["layout"] == "mono"
        if normalize == "input":
            assert np.sqrt(np.mean(got**2)) == pytest.approx(np.sqrt(np.mean(x**2.0)), rel=1e-5)
        if normalize == "peak":
            assert np.max(np.abs(got)) == pytest.approx(10 ** (-0.1 / 20), rel=1e-6)
        if normalize == "none":
            assert record["gain"] == 1.0

    def test_peak_alignment_of_a_delayed_impulse_is_the_identity(self, tmp_path):
        x = noise(np.random.default_rng(3), 1, 1000)
        h = np.zeros((1, 200), np.float32)
        h[0, 123] = 1.0
        write(tmp_path / "x.wav", x)
        write(tmp_path / "h.npy", h)
        run([str(tmp_path / "x.wav")], [str(tmp_path / "h.npy")], tmp_path / "peak",
            normalize="none")  # fmt: skip
        run([str(tmp_path / "x.wav")], [str(tmp_path / "h.npy")], tmp_path / "causal",
            normalize="none", align="causal")  # fmt: skip
        np.testing.assert_array_equal(decoded(tmp_path / "peak/x.wav"), x)
        causal = decoded(tmp_path / "causal/x.wav")
        np.testing.assert_array_equal(causal[:, 123:], x[:, :-123])
        assert not causal[:, :123].any()

    @pytest.mark.parametrize("channels, response_channels", [(2, 1), (3, 3), (2, 2), (2, 4)])
    def test_channel_layouts(self, tmp_path, channels, response_channels):
        rng = np.random.default_rng(4)
        x = noise(rng, channels, 1500)
        h = room(rng, response_channels, 250, peak_at=20)
        write(tmp_path / "x.wav", x)
        write(tmp_path / "h.wav", h)
        _, records = run([str(tmp_path / "x.wav")], [str(tmp_path / "h.wav")], tmp_path / "out",
                         mix=0.6, length="tail")  # fmt: skip
        expected, _ = reference(x, h, mix=0.6, length="tail")
        np.testing.assert_allclose(decoded(tmp_path / "out/x.wav"), expected, atol=1e-6)
        kinds = {1: "mono", 4: "true-stereo"}
        assert records["x.wav"]["layout"] == kinds.get(response_channels, "per-channel")

    def test_responses_at_another_rate_are_resampled(self, tmp_path):
        rng = np.random.default_rng(5)
        x = noise(rng, 1, 4800)
        h = room(rng, 1, 441, peak_at=10)
        write(tmp_path / "x.wav", x, rate=48000)
        write(tmp_path / "h.wav", h, rate=44100)
        _, records = run([str(tmp_path / "x.wav")], [str(tmp_path / "h.wav")], tmp_path / "out",
                         normalize="none")  # fmt: skip
        resampled = soxr.resample(h.T, 44100, 48000, quality="HQ").T * (44100 / 48000)
        expected, shift = reference(x, resampled, normalize="none")
        np.testing.assert_allclose(decoded(tmp_path / "out/x.wav"), expected, atol=1e-6)
        assert (records["x.wav"]["rate"], records["x.wav"]["response_rate"]) == (48000, 44100)
        assert records["x.wav"]["align_shift"] == shift

    def test_subtype_is_kept_and_format_converts(self, dataset):
        root = dataset["root"]
        run([str(dataset["clips"] / "c1.wav")], [str(dataset["rirs"])], root / "out")
        assert sf.info(str(root / "out/c1.wav")).subtype == "PCM_16"
        run([str(dataset["clips"] / "c1.wav")], [str(dataset["rirs"])], root / "flac",
            format="FLAC", subtype="PCM_24")  # fmt: skip
        info = sf.info(str(root / "flac/c1.flac"))
        assert (info.format, info.subtype) == ("FLAC", "PCM_24")
        run([str(dataset["clips"] / "c1.wav")], [str(dataset["rirs"])], root / "npy",
            format="NPY")  # fmt: skip
        assert np.load(root / "npy/c1.npy").shape == (2, 3250)

    def test_npy_clips_take_rate_for_audio_outputs(self, tmp_path):
        write(tmp_path / "x.npy", np.ones(500, np.float32) * 0.1)
        write(tmp_path / "h.npy", np.array([1.0, 0.5], np.float32))
        _, records = run([str(tmp_path / "x.npy")], [str(tmp_path / "h.npy")], tmp_path / "a")
        assert np.load(tmp_path / "a/x.npy").shape == (500,)  # 1-D in, 1-D out
        _, records = run([str(tmp_path / "x.npy")], [str(tmp_path / "h.npy")], tmp_path / "b",
                         format="WAV")  # fmt: skip
        assert "needs a sample rate" in records["x.wav"]["error"]
        _, records = run([str(tmp_path / "x.npy")], [str(tmp_path / "h.npy")], tmp_path / "c",
                         format="WAV", rate=8000)  # fmt: skip
        assert sf.info(str(tmp_path / "c/x.wav")).samplerate == 8000

    def test_rows_go_through_few_calls_sorted_and_cut_by_size(self, dataset):
        calls = []

        def counting(engine, signals, kernels, mode, **kw):
            calls.append([(len(s), len(k)) for s, k in zip(signals, kernels, strict=True)])
            assert mode == "full"
            return fake_convolve(engine, signals, kernels, mode)

        run([str(dataset["clips"])], [str(dataset["rirs"])], dataset["root"] / "out",
            convolve=counting, group_clips=64)  # fmt: skip
        assert len(calls) == 1 and len(calls[0]) == 9  # 3 mono + 3 stereo clips
        assert calls[0] == sorted(calls[0])
        calls.clear()
        run([str(dataset["clips"])], [str(dataset["rirs"])], dataset["root"] / "small",
            convolve=counting, group_clips=64, batch_samples=5000)  # fmt: skip
        assert len(calls) > 2 and sum(len(c) for c in calls) == 9

    def test_option_values_are_checked_first(self, dataset):
        for bad in ({"length": "long"}, {"align": "center"}, {"normalize": "rms"}):
            with pytest.raises(ValueError, match="--"):
                run([str(dataset["clips"])], [str(dataset["rirs"])], dataset["root"] / "o", **bad)
        assert not (dataset["root"] / "o").exists()


# Outputs, manifest, resume, failures ---------------------------------------------------


class TestManifestAndResume:
    def test_manifest_fields_in_input_order(self, dataset):
        root = dataset["root"]
        report, _ = run([str(dataset["clips"])], [str(dataset["rirs"])], root / "out",
                        group_clips=2, mix="0.2-0.6", seed=11)  # fmt: skip
        records = lines(root / "out")
        assert [r["output"] for r in records] == [
            "c0.wav", "c1.wav", "c2.wav", "c3.wav", "sub/c4.wav", "sub/c5.wav"
        ]  # fmt: skip
        required = {"input", "output", "response", "mix", "seed", "align_shift", "gain"}
        assert all(required <= set(r) for r in records)
        assert all(r["seed"] == 11 and 0.2 <= r["mix"] <= 0.6 for r in records)
        assert records[0]["input"] == str(dataset["clips"] / "c0.wav")
        assert report.done == 6 and report.failed == 0 and report.total == 6

    def test_two_runs_are_byte_identical(self, dataset):
        root = dataset["root"]
        for name in ("one", "two"):
            run([str(dataset["clips"])], [str(dataset["rirs"])], root / name, mix="0.1-0.9")
        assert (root / "one/manifest.jsonl").read_text().replace("/one/", "/two/") == (
            root / "two/manifest.jsonl"
        ).read_text()
        for record in lines(root / "one"):
            name = record["output"]
            assert (root / "one" / name).read_bytes() == (root / "two" / name).read_bytes()

    def test_float_outputs_carry_no_time_stamp(self, tmp_path):
        """libsndfile's PEAK chunk holds the time of writing; the job leaves it out."""
        write(tmp_path / "x.wav", noise(np.random.default_rng(0), 2, 300))
        write(tmp_path / "h.npy", np.array([1.0, 0.5], np.float32))
        run([str(tmp_path / "x.wav")], [str(tmp_path / "h.npy")], tmp_path / "one")
        time.sleep(1.1)
        run([str(tmp_path / "x.wav")], [str(tmp_path / "h.npy")], tmp_path / "two")
        assert sf.info(str(tmp_path / "one/x.wav")).subtype == "FLOAT"
        assert (tmp_path / "one/x.wav").read_bytes() == (tmp_path / "two/x.wav").read_bytes()

    def test_existing_outputs_need_force_or_resume(self, dataset):
        root = dataset["root"]
        run([str(dataset["clips"])], [str(dataset["rirs"])], root / "out")
        with pytest.raises(OutputError, match="--resume"):
            run([str(dataset["clips"])], [str(dataset["rirs"])], root / "out")
        (root / "out/manifest.jsonl").unlink()
        with pytest.raises(OutputError, match="6 output"):
            run([str(dataset["clips"])], [str(dataset["rirs"])], root / "out")
        report, _ = run([str(dataset["clips"])], [str(dataset["rirs"])], root / "out", force=True)
        assert report.done == 6

    def test_resume_skips_what_is_done_and_listed(self, dataset):
        root = dataset["root"]
        out = root / "out"
        run([str(dataset["clips"])], [str(dataset["rirs"])], out, group_clips=2)
        whole = {r["output"]: (out / r["output"]).read_bytes() for r in lines(out)}
        text = (out / "manifest.jsonl").read_text().splitlines(keepends=True)
        # As a kill leaves it: two lines, a third cut short, its file gone, a temp file.
        (out / "manifest.jsonl").write_text("".join(text[:2]) + text[2][:25])
        (out / "c2.wav").unlink()
        (out / "c3.wav").write_bytes(b"half")  # on disk but never listed: redone
        (out / ".maxconv-0123456789abcdef.part").write_bytes(b"junk")
        seen = []

        def watching(engine, signals, kernels, mode, **kw):
            seen.append(len(signals))
            return fake_convolve(engine, signals, kernels, mode)

        report, records = run([str(dataset["clips"])], [str(dataset["rirs"])], out,
                              group_clips=2, resume=True, convolve=watching)  # fmt: skip
        assert (report.skipped, report.done, report.total) == (2, 4, 6)
        assert sum(seen) == 1 + 2 + 1 + 2  # c2..c5: mono, stereo, mono, stereo rows
        assert [r["output"] for r in lines(out)] == [
            "c0.wav", "c1.wav", "c2.wav", "c3.wav", "sub/c4.wav", "sub/c5.wav"
        ]  # fmt: skip
        assert {name: (out / name).read_bytes() for name in whole} == whole
        assert not list(out.glob(".maxconv-*"))

    def test_resume_after_a_killed_process(self, dataset):
        """SIGKILL mid-run (no cleanup at all), then --resume: every output once, complete."""
        root = dataset["root"]
        for index in range(40):
            write(dataset["clips"] / "many" / f"m{index:02d}.wav", noise(dataset["rng"], 1, 800))
        script = textwrap.dedent(
            f"""
            import sys, time
            sys.path[:0] = [{str(Path(__file__).parent)!r}, {PACKAGE_ROOT!r}]
            from test_augment import FakeEngine, fake_convolve
            from maxconv.augment import AugmentOptions, plan_job, run_job

            def slow(*args, **kw):
                time.sleep(0.3)
                return fake_convolve(*args, **kw)

            plan, manifest = plan_job([{str(dataset["clips"])!r}], [{str(dataset["rirs"])!r}],
                                      {str(root / "out")!r},
                                      AugmentOptions(device="cpu", group_clips=3,
                                                     window_clips=6))
            run_job(plan, manifest, [FakeEngine()], convolve=slow)
            """
        )
        child = subprocess.Popen([sys.executable, "-c", script])
        manifest = root / "out" / "manifest.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            not manifest.exists() or len(manifest.read_text().splitlines()) < 6
        ):
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        listed = lines(root / "out")
        assert 6 <= len(listed) < 46
        for record in listed:  # everything listed is a complete file
            assert sf.info(str(root / "out" / record["output"])).frames > 0
        report, _ = run([str(dataset["clips"])], [str(dataset["rirs"])], root / "out",
                        group_clips=3, resume=True)  # fmt: skip
        assert report.skipped == len(listed) and report.done + report.skipped == 46
        outputs = [r["output"] for r in lines(root / "out")]
        assert len(outputs) == len(set(outputs)) == 46
        run([str(dataset["clips"])], [str(dataset["rirs"])], root / "clean", group_clips=3)
        for name in outputs:
            assert (root / "out" / name).read_bytes() == (root / "clean" / name).read_bytes()

    def test_bad_clips_are_reported_and_the_run_goes_on(self, dataset):
        root = dataset["root"]
        (dataset["clips"] / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
        write(dataset["rirs"] / "stereo.wav", room(dataset["rng"], 3, 100))
        (root / "list.txt").write_text("clips/c0.wav\nclips/gone.wav\nclips/broken.wav\n")
        report, records = run([str(root / "list.txt"), str(dataset["clips"] / "c1.wav")],
                              [str(dataset["rirs"] / "a.wav")], root / "out")  # fmt: skip
        assert (report.done, report.failed) == (2, 2)
        assert "gone.wav" in records["clips/gone.wav"]["error"]
        assert "broken.wav" in records["clips/broken.wav"]["error"]
        assert "align_shift" not in records["clips/broken.wav"]
        assert not (root / "out/clips/broken.wav").exists()
        # A response that fits no clip fails those clips only.
        report, records = run([str(dataset["clips"])], [str(dataset["rirs"] / "stereo.wav")],
                              root / "out3")  # fmt: skip
        assert report.failed == 7 and "3 channels" in records["c0.wav"]["error"]

    def test_strict_stops_at_the_first_failure(self, dataset):
        root = dataset["root"]
        (dataset["clips"] / "a_broken.wav").write_bytes(b"not audio")
        report, records = run([str(dataset["clips"])], [str(dataset["rirs"])], root / "out",
                              strict=True, group_clips=1)  # fmt: skip
        assert report.stopped and report.failed == 1
        assert len(records) < 7


# The per-clip file path: plain WAVs read and written here --------------------------------

WAV_SUBTYPES = ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]


def awkward_samples(rng: np.random.Generator, channels: int, frames: int) -> np.ndarray:
    """Noise beyond full scale, with every boundary the integer rounding has to get right."""
    x = (rng.standard_normal((channels, frames)) * 0.7).astype(np.float32)
    edges = []
    for bits in (16, 24, 32):
        top = 2.0 ** (bits - 1)
        for k in (-top - 1, -top, -top + 0.5, -0.5, 0.5, 1.5, top - 1.5, top - 1, top - 0.5, top):
            edges.append(k / top)
    special = np.array(edges + [1.0, -1.0, 1e-40, -1e-40, 3e38, -3e38, 1.0000001], np.float32)
    x[0, : special.size] = special
    return x


def audio_bytes(path: Path, samples: np.ndarray, rate: int, subtype: str) -> bytes:
    """What maxconv.audio_write's writer (the job's path for formats clipio leaves) writes."""
    from maxconv.audio_write import open_writer
    from maxconv.augment.group import _without_peak_chunk

    with open_writer(path, rate, samples.shape[0], subtype, "WAV") as writer:
        _without_peak_chunk(writer)
        writer.write(samples)
    return path.read_bytes()


class TestClipFiles:
    @pytest.mark.parametrize("subtype", [*WAV_SUBTYPES, "PCM_U8", "ULAW"])
    @pytest.mark.parametrize("channels", [1, 2, 3])
    def test_reading_matches_libsndfile(self, tmp_path, subtype, channels):
        from maxconv import audio_read
        from maxconv.augment.clipio import _decode_wav, read_clip

        x = awkward_samples(np.random.default_rng(channels), channels, 1001)
        x[~np.isfinite(x)] = 0.5
        if subtype in ("PCM_U8", "ULAW"):  # read by libsndfile (its encoders want full scale)
            x = np.clip(x, -1, 1)
        path = tmp_path / "x.wav"
        sf.write(path, x.T, 22050, subtype=subtype)
        got, info = read_clip(str(path))
        expected, expected_info = audio_read.read_signal(path, np.float32)
        # Decoded here (not by libsndfile): the plain subtypes.
        assert (_decode_wav(path.read_bytes()) is not None) == (subtype in WAV_SUBTYPES)
        assert info == expected_info
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)
        assert got.tobytes() == expected.tobytes()

    def test_reading_falls_back_with_the_same_errors(self, tmp_path):
        from maxconv import audio_read
        from maxconv.augment.clipio import _decode_wav, read_clip

        x = noise(np.random.default_rng(0), 1, 500)
        sf.write(tmp_path / "good.wav", x.T, 8000, subtype="PCM_16")
        good = (tmp_path / "good.wav").read_bytes()
        assert _decode_wav(good) is not None
        (tmp_path / "cut.wav").write_bytes(good[:300])
        (tmp_path / "junk.wav").write_bytes(b"RIFF junk")
        listed = good[:4] + (len(good) + 18).to_bytes(4, "little") + good[8:] + b"LIST"
        (tmp_path / "list.wav").write_bytes(listed + (10).to_bytes(4, "little") + bytes(10))
        for name in ("cut.wav", "junk.wav", "gone.wav"):
            with pytest.raises(InputError) as ours:
                read_clip(str(tmp_path / name))
            with pytest.raises(InputError) as theirs:
                audio_read.read_signal(tmp_path / name, np.float32)
            assert str(ours.value) == str(theirs.value)
        sf.write(tmp_path / "ext.wav", x.T, 8000, format="WAVEX", subtype="PCM_16")
        for name in ("list.wav", "ext.wav"):  # data not last; WAVE_FORMAT_EXTENSIBLE
            assert _decode_wav((tmp_path / name).read_bytes()) is None
            got, info = read_clip(str(tmp_path / name))
            assert got.tobytes() == audio_read.read_signal(tmp_path / name)[0].tobytes()
            assert info == audio_read.read_info(tmp_path / name)

    @pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32"])
    @pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
    def test_integer_rounding_is_audios(self, subtype):
        from maxconv.audio_write import _to_pcm
        from maxconv.augment.clipio import _container

        x = awkward_samples(np.random.default_rng(1), 2, 3000)
        x[1, :4] = [np.inf, -np.inf, np.nan, -np.nan]
        np.testing.assert_array_equal(_container(x, subtype), _to_pcm(x, subtype).T)
        finite = np.nan_to_num(x, nan=0.25, posinf=7.0, neginf=-7.0)
        np.testing.assert_array_equal(_container(finite, subtype), _to_pcm(finite, subtype).T)

    @pytest.mark.parametrize("subtype", WAV_SUBTYPES)
    @pytest.mark.parametrize("channels, frames", [(1, 1), (1, 777), (2, 1000), (3, 333)])
    def test_writing_matches_audios_writer(self, tmp_path, subtype, channels, frames):
        """Odd data chunks (24-bit) have a pad byte; float WAVs a fact chunk."""
        from maxconv.augment.clipio import OutputFiles, wav_bytes

        x = awkward_samples(np.random.default_rng(frames), channels, max(frames, 40))[:, :frames]
        expected = audio_bytes(tmp_path / "audio.wav", x, 44100, subtype)
        parts = wav_bytes(x, 44100, subtype)
        assert parts is not None
        OutputFiles().put(tmp_path / "ours.wav", parts)
        assert (tmp_path / "ours.wav").read_bytes() == expected
        assert not list(tmp_path.glob(".maxconv-*"))

    def test_a_kind_whose_bytes_differ_goes_through_libsndfile(self, tmp_path, monkeypatch):
        from maxconv.augment import clipio

        monkeypatch.setattr(clipio, "_checked", {})
        monkeypatch.setattr(clipio, "_payload", lambda frames, subtype: frames[::-1].copy())
        x = noise(np.random.default_rng(2), 2, 500)
        assert clipio.wav_bytes(x, 16000, "PCM_16") is None
        assert clipio._checked == {("PCM_16", 2): False}
        assert clipio.wav_bytes(x, 16000, "PCM_16") is None  # remembered
        write(tmp_path / "x.wav", x, subtype="PCM_16")
        write(tmp_path / "h.npy", np.array([1.0], np.float32))
        run([str(tmp_path / "x.wav")], [str(tmp_path / "h.npy")], tmp_path / "out",
            normalize="none")  # fmt: skip
        assert (tmp_path / "out/x.wav").read_bytes() == (tmp_path / "x.wav").read_bytes()

    def test_permissions_new_and_overwritten(self, tmp_path):
        write(tmp_path / "x.wav", noise(np.random.default_rng(3), 1, 300), subtype="PCM_16")
        write(tmp_path / "h.npy", np.array([1.0, 0.5], np.float32))
        args = ([str(tmp_path / "x.wav")], [str(tmp_path / "h.npy")], tmp_path / "out")
        run(*args)
        umask = os.umask(0)
        os.umask(umask)
        assert (tmp_path / "out/x.wav").stat().st_mode & 0o777 == 0o666 & ~umask
        os.chmod(tmp_path / "out/x.wav", 0o640)
        run(*args, force=True)
        assert (tmp_path / "out/x.wav").stat().st_mode & 0o777 == 0o640

    def test_an_output_that_is_a_folder_is_that_clips_error(self, tmp_path):
        write(tmp_path / "x.wav", noise(np.random.default_rng(4), 1, 300), subtype="PCM_16")
        write(tmp_path / "h.npy", np.array([1.0], np.float32))
        (tmp_path / "out" / "x.wav").mkdir(parents=True)
        report, records = run([str(tmp_path / "x.wav")], [str(tmp_path / "h.npy")],
                              tmp_path / "out", force=True)  # fmt: skip
        assert report.failed == 1
        assert records["x.wav"]["error"].endswith("it is a folder; give a file name")
        assert not list((tmp_path / "out").glob(".maxconv-*"))

    def test_the_report_breaks_the_time_down(self, dataset):
        report, _ = run([str(dataset["clips"])], [str(dataset["rirs"])], dataset["root"] / "o",
                        workers=3, group_clips=4)  # fmt: skip
        data = report.as_dict()
        assert set(data["phases"]) == {"read", "compute", "finish", "write", "manifest", "wall",
                                       "cpu"}  # fmt: skip
        assert all(seconds >= 0 for seconds in data["phases"].values())
        assert data["phases"]["read"] > 0 and data["phases"]["write"] > 0
        assert data["phases"]["wall"] == report.seconds
        assert (data["workers"], data["group_clips"]) == (3, 4)


# Groups on a CPU: response-ordered windows, one op call per response ------------------


def tasks_of(responses: list[str]) -> list:
    from maxconv.augment.plan import Task

    return [Task(i, f"c{i}.wav", f"c{i}.wav", r, 1.0) for i, r in enumerate(responses)]


class TestWindows:
    def test_groups_are_cut_from_response_ordered_windows(self):
        from maxconv.augment.plan import JobPlan

        responses = ["b", "a", "c", "a", "b", "a", "c", "b", "a"]
        plan = JobPlan(Path("."), tasks_of(responses), 9, 0, 0, AugmentOptions(), group_clips=2)
        plan.window_clips = 5
        groups = list(plan.groups())
        indices = [[t.index for t in group] for group in groups]
        # window 0..4: a1 a3 b0 b4 c2; window 5..8: a5 a8 b7 c6
        assert indices == [[1, 3], [0, 4], [2], [5, 8], [7, 6]]
        assert [len(window) for window in plan.windows()] == [3, 2]
        assert list(plan.groups()) == groups  # a pure function of the tasks
        plan.window_clips = None  # a GPU's: consecutive clips, each group a window
        assert [[t.index for t in g] for g in plan.groups()] == [
            [0, 1], [2, 3], [4, 5], [6, 7], [8]
        ]  # fmt: skip

    def test_records_come_back_in_input_order_once_those_before_are_in(self):
        from maxconv.augment.manifest import InputOrder

        order = InputOrder()
        assert order.add([3, 1], [{"i": 3}, {"i": 1}]) == []
        assert order.add([2, 0], [{"i": 2}, {"i": 0}]) == [
            {"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}
        ]  # fmt: skip
        assert order.add([4], [{"i": 4}]) == [{"i": 4}]  # groups in input order: at once
        assert order.add([6], [{"i": 6}]) == []
        assert order.add([5], []) == []  # a cancelled group
        assert order.release() == [{"i": 6}] and order.release() == []

    def test_manifest_in_input_order_with_small_windows(self, dataset):
        root = dataset["root"]
        run([str(dataset["clips"])], [str(dataset["rirs"])], root / "out", group_clips=2,
            window_clips=4, seed=4)  # fmt: skip
        assert [r["output"] for r in lines(root / "out")] == [
            "c0.wav", "c1.wav", "c2.wav", "c3.wav", "sub/c4.wav", "sub/c5.wav"
        ]  # fmt: skip

    def test_window_clips_is_checked(self, dataset):
        with pytest.raises(ValueError, match="window_clips"):
            run([str(dataset["clips"])], [str(dataset["rirs"])], dataset["root"] / "o",
                window_clips=0)  # fmt: skip


class TestCpuCompute:
    """`compute_group` on the real CPU engine: one op call per response channel."""

    def group(self, tmp_path, specs, responses, options):
        """Clips (channels, frames, response name) loaded as the job loads them."""
        from maxconv.augment.group import load_clip
        from maxconv.augment.plan import Task

        rng = np.random.default_rng(len(specs))
        paths = {name: str(write(tmp_path / f"{name}.wav", h)) for name, h in responses.items()}
        bank = ResponseBank()
        clips = []
        for index, (channels, frames, name) in enumerate(specs):
            clip = write(tmp_path / f"c{index}.wav", noise(rng, channels, frames))
            task = Task(index, str(clip), f"c{index}.wav", paths[name], 0.6)
            clips.append(load_clip(task, bank, options))
        return clips

    @pytest.mark.parametrize("length", ["same", "tail"])
    @pytest.mark.parametrize("align", ["peak", "causal"])
    def test_against_scipy(self, tmp_path, length, align):
        from maxconv.augment.group import compute_group, finish_clip
        from maxconv.engine import get_engine

        rng = np.random.default_rng(5)
        responses = {
            "mono": room(rng, 1, 700, peak_at=40),  # FFT op
            "short": room(rng, 1, 20, peak_at=3),  # direct op
            "stereo": room(rng, 2, 500, peak_at=9),
            "true": room(rng, 4, 300, peak_at=17),
        }
        specs = [(1, 3000, "mono"), (2, 2500, "mono"), (1, 3100, "mono"), (1, 9000, "mono"),
                 (1, 2000, "short"), (2, 2200, "stereo"), (2, 2400, "true"),
                 (2, 2300, "true"), (1, 2900, "mono"), (1, 50, "mono")]  # fmt: skip
        options = AugmentOptions(length=length, align=align, batch_samples=8000)
        clips = self.group(tmp_path, specs, responses, options)
        wets = compute_group(clips, options, get_engine("cpu"))
        for clip, wet, (_, _, name) in zip(clips, wets, specs, strict=True):
            got, shift, _ = finish_clip(clip, wet, options)
            expected, want_shift = reference(clip.data, responses[name], mix=0.6, length=length,
                                             align=align)  # fmt: skip
            assert shift == want_shift and got.shape == expected.shape
            np.testing.assert_allclose(got, expected, atol=3e-6 * np.max(np.abs(expected)))

    def test_same_bytes_as_each_clip_alone_within_rounding_and_every_run(self, tmp_path):
        """Rows paired with other clips' rows differ from a lone call by rounding only,
        and the same group gives the same bytes every time."""
        from maxconv.augment.group import compute_group
        from maxconv.engine import get_engine

        rng = np.random.default_rng(6)
        responses = {"a": room(rng, 1, 900, peak_at=11), "b": room(rng, 1, 1300, peak_at=70)}
        specs = [(1, 4000, "a"), (1, 4000, "b"), (1, 4000, "a"), (1, 3900, "a"), (1, 4000, "b")]
        options = AugmentOptions()
        clips = self.group(tmp_path, specs, responses, options)
        engine = get_engine("cpu")
        together = compute_group(clips, options, engine)
        again = compute_group(clips, options, engine)
        for wet, other, clip in zip(together, again, clips, strict=True):
            assert wet.tobytes() == other.tobytes()
            alone = compute_group([clip], options, engine)[0]
            np.testing.assert_allclose(wet, alone, atol=2e-6 * np.max(np.abs(alone)))


# gpu:all ---------------------------------------------------------------------------------


class TestAllGpus:
    def test_resolve_devices(self):
        assert resolve_devices("gpu:all", lambda: 3) == ["gpu:0", "gpu:1", "gpu:2"]
        assert resolve_devices("cpu", lambda: 3) == ["cpu"]
        with pytest.raises(ValueError, match="no GPU"):
            resolve_devices("gpu:all", lambda: 0)
        with pytest.raises(ValueError, match="device must be"):
            resolve_devices("tpu", lambda: 0)

    def test_groups_spread_over_every_gpu_in_input_order(self, dataset):
        """Fake devices: each group computes on a free GPU, outputs as on one device."""
        root = dataset["root"]
        for index in range(30):
            write(dataset["clips"] / "many" / f"m{index:02d}.wav", noise(dataset["rng"], 1, 500))
        used: dict[str, set] = {}
        lock = threading.Lock()
        busy = set()
        overlap = []

        def on_device(engine, signals, kernels, mode, *, method):
            device = engine.label
            with lock:
                used.setdefault(device, set()).add(threading.get_ident())
                assert device not in busy  # one group at a time per device
                busy.add(device)
                overlap.append(len(busy))
            time.sleep(0.02)
            with lock:
                busy.discard(device)
            return fake_convolve(engine, signals, kernels, mode)

        options = AugmentOptions(device="gpu:all", group_clips=2, mix="0.3-0.5")
        plan, manifest = plan_job([str(dataset["clips"])], [str(dataset["rirs"])], root / "all",
                                  options)  # fmt: skip
        with manifest:
            engines = [FakeEngine("gpu:0"), FakeEngine("gpu:1")]
            report = run_job(plan, manifest, engines, convolve=on_device)
        assert report.devices == ["gpu:0", "gpu:1"] and report.done == 36
        assert set(used) == {"gpu:0", "gpu:1"} and max(overlap) == 2
        run([str(dataset["clips"])], [str(dataset["rirs"])], root / "one", group_clips=2,
            mix="0.3-0.5")  # fmt: skip
        assert (root / "all/manifest.jsonl").read_text().replace("/all/", "/one/") == (
            root / "one/manifest.jsonl"
        ).read_text()
        for record in lines(root / "one"):
            name = record["output"]
            assert (root / "all" / name).read_bytes() == (root / "one" / name).read_bytes()


# The command, end to end on the real engine (CPU) ----------------------------------------


class TestCommand:
    def test_cli_against_scipy_and_byte_identical_runs(self, tmp_path):
        rng = np.random.default_rng(8)
        for index in range(4):
            write(tmp_path / "clips" / f"s{index}.wav", noise(rng, 2, 4000 + 500 * index))
        write(tmp_path / "rirs" / "mono.wav", room(rng, 1, 600, peak_at=12))
        write(tmp_path / "rirs" / "ts.wav", room(rng, 4, 500, peak_at=33))
        write(tmp_path / "rirs" / "pair.npy", room(rng, 2, 200, peak_at=5))
        args = [str(tmp_path / "clips"), "-r", str(tmp_path / "rirs"), "--device", "cpu",
                "--mix", "0.3-0.8", "--length", "tail", "--seed", "9"]  # fmt: skip
        first = runner.invoke(app, ["augment", *args, "-o", str(tmp_path / "a"), "--json"])
        assert first.exit_code == 0, first.output
        report = json.loads(first.stdout)
        assert report["done"] == 4 and report["failed"] == 0 and report["clips_per_second"] > 0
        second = runner.invoke(app, ["augment", *args, "-o", str(tmp_path / "b"), "--quiet"])
        assert second.exit_code == 0, second.output
        assert second.output == ""
        assert (tmp_path / "a/manifest.jsonl").read_text().replace("/a/", "/b/") == (
            tmp_path / "b/manifest.jsonl"
        ).read_text()
        for record in lines(tmp_path / "a"):
            name = record["output"]
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
            path = record["response"]
            h = np.load(path) if path.endswith(".npy") else sf.read(path, always_2d=True)[0].T
            expected, shift = reference(
                decoded(Path(record["input"])), h, mix=record["mix"], length="tail"
            )
            assert record["align_shift"] == shift
            got = decoded(tmp_path / "a" / name)
            np.testing.assert_allclose(got, expected, atol=1e-5 * np.max(np.abs(expected)))

    def test_cli_exit_codes(self, dataset):
        root = dataset["root"]
        (dataset["clips"] / "broken.wav").write_bytes(b"junk")
        result = runner.invoke(app, ["augment", str(dataset["clips"]), "-r",
                                     str(dataset["rirs"] / "a.wav"), "-o", str(root / "out"),
                                     "--device", "cpu"])  # fmt: skip
        assert result.exit_code == 3, result.output
        assert "1 failed" in result.output and "broken.wav" in result.output
        again = runner.invoke(app, ["augment", str(dataset["clips"]), "-r",
                                    str(dataset["rirs"]), "-o", str(root / "out")])  # fmt: skip
        assert again.exit_code == 5 and "--resume" in again.output
        usage = runner.invoke(app, ["augment", str(dataset["clips"]), "-o", str(root / "x")])
        assert usage.exit_code == 1 and "--responses" in usage.output
        bad = runner.invoke(app, ["augment", str(dataset["clips"]), "-r", str(dataset["rirs"]),
                                  "-o", str(root / "y"), "--mix", "2"])  # fmt: skip
        assert bad.exit_code == 1 and "--mix" in bad.output


def test_ray_missing_says_how_to_install(monkeypatch):
    import maxconv.ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MaxconvError, match=r"pip install 'maxconv\[ray\]'"):
        maxconv.ray._import_ray()
    assert os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] == "0"
