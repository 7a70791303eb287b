"""Device parsing and the GPU-to-CPU fallback of 'auto'."""

from __future__ import annotations

import pytest

from maxconv import devices
from maxconv.devices import DeviceSpec, DeviceWarning, open_device, parse_device


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", None),
        ("cpu", DeviceSpec("cpu")),
        ("GPU", DeviceSpec("gpu", 0)),
        ("gpu:3", DeviceSpec("gpu", 3)),
        (" cpu ", DeviceSpec("cpu")),
    ],
)
def test_parse_device(text: str, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["", "gpu:", "gpu:x", "cuda", "gpu:-1", "cpu:0"])
def test_parse_device_rejects_unknown(text: str):
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'gpu' or 'gpu:N'"):
        parse_device(text)


def test_auto_without_gpu_is_cpu(monkeypatch):
    monkeypatch.setattr(devices, "gpu_count", lambda: 0)
    spec, device = open_device("auto")
    assert spec.label == "cpu" and device.is_host


def test_auto_falls_back_to_cpu_with_one_warning_when_gpu_fails(monkeypatch):
    def broken(index: int):
        raise RuntimeError("CUDA driver version is insufficient")

    monkeypatch.setattr(devices, "gpu_count", lambda: 1)
    monkeypatch.setattr(devices.driver, "Accelerator", broken)
    with pytest.warns(
        DeviceWarning, match="could not be initialised .*insufficient.*CPU"
    ) as caught:
        spec, _ = open_device("auto")
    assert spec.label == "cpu" and len(caught) == 1


def test_explicit_gpu_that_fails_is_an_error(monkeypatch):
    def broken(index: int):
        raise RuntimeError("CUDA driver version is insufficient")

    monkeypatch.setattr(devices, "gpu_count", lambda: 1)
    monkeypatch.setattr(devices.driver, "Accelerator", broken)
    with pytest.raises(ValueError, match="could not be initialised.*use --device cpu"):
        open_device("gpu")


def test_gpu_index_beyond_count(monkeypatch):
    monkeypatch.setattr(devices, "gpu_count", lambda: 2)
    with pytest.raises(ValueError, match=r"only 2 GPU\(s\) \(gpu:0..gpu:1\)"):
        open_device("gpu:2")
