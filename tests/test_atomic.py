"""maxconv.atomic: a file appears whole or not at all; left-overs are found and removed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from maxconv import atomic


def test_replacing_renames_a_complete_file_over_the_target(tmp_path: Path):
    target = tmp_path / "record.json"
    target.write_text("old")
    with atomic.replacing(target, "record.json.", text=True) as file:
        file.write("new")
        assert target.read_text() == "old"  # not before the block ends
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_replacing_leaves_the_target_as_it_was_on_an_error(tmp_path: Path):
    target = tmp_path / "entry.mef"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic.replacing(target, "entry.mef.") as file:
        file.write(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry.mef"]
    assert not atomic._UNCOMMITTED


def test_temp_files_cut_off_by_a_signal_are_discarded(tmp_path: Path):
    temp, descriptor = atomic.create_temp(tmp_path)
    os.close(descriptor)
    assert temp.name.startswith(".maxconv-") and temp.name.endswith(".part")
    atomic.discard_uncommitted()
    assert list(tmp_path.iterdir()) == [] and not atomic._UNCOMMITTED


def test_commit_gives_the_mode_asked_for(tmp_path: Path):
    temp, descriptor = atomic.create_temp(tmp_path, mode=0o600)
    os.close(descriptor)
    atomic.commit(temp, tmp_path / "out.wav", 0o640)
    assert stat.S_IMODE((tmp_path / "out.wav").stat().st_mode) == 0o640
    assert not atomic._UNCOMMITTED


def test_an_unwritable_folder_is_an_os_error_with_nothing_recorded(tmp_path: Path):
    with pytest.raises(OSError):
        atomic.create_temp(tmp_path / "missing")
    assert not atomic._UNCOMMITTED
