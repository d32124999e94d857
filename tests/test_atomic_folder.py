"""A folder filled whole or not at all (`atomic.staged_folder`): the old one stays until the new one is complete."""

from __future__ import annotations

import pytest

from dreamtray.atomic import staged_folder


def test_a_staged_folder_replaces_the_old_one_only_when_complete(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "old.bin").write_text("old")
    with pytest.raises(RuntimeError), staged_folder(folder) as staging:
        (staging / "half.bin").write_text("half")
        raise RuntimeError("the conversion failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] and (folder / "old.bin").read_text() == "old"
    with staged_folder(folder) as staging:
        assert staging != folder and not any(staging.iterdir())
        (staging / "new.bin").write_text("new")
        assert (folder / "old.bin").exists(), "the old folder stays while the new one fills"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert [p.name for p in folder.iterdir()] == ["new.bin"]
