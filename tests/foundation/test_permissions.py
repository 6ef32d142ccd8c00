"""Files and folders the harness writes get the modes the umask asks for (issue 13, point 3).

``mkstemp`` / ``mkdtemp`` create 0600 files and 0700 folders whatever the umask; everything we rename into
place must end up as readable as a file made with ``open`` or a folder made with ``mkdir``.
"""

import os
import stat

import pytest

from zoo.artifact import ArtifactMeta, save_artifact
from zoo.backbones import build_backbone, get_spec
from zoo.io import atomic_torch_save, atomic_write_json, current_umask, make_temp_dir


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_without_changing(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_atomic_writes_honour_umask(tmp_path, umask):
    rec = atomic_write_json(tmp_path / "records" / "r.json", {"a": 1})
    ckpt = atomic_torch_save({"x": 1}, tmp_path / "ckpt.pt")
    assert _mode(rec) == _mode(ckpt) == 0o666 & ~umask
    # the same as a file the user makes with open()
    (tmp_path / "plain.txt").write_text("x")
    assert _mode(rec) == _mode(tmp_path / "plain.txt")


def test_temp_dirs_honour_umask(tmp_path, umask):
    d = make_temp_dir(".x.", tmp_path)
    assert _mode(d) == 0o777 & ~umask


def test_artifact_folder_and_files_honour_umask(tmp_path, umask):
    arch = "resnet18"
    meta = ArtifactMeta(architecture=arch, feature_dim=get_spec(arch).feature_dim, input_size=32, method="test")
    art = save_artifact(tmp_path / "art", build_backbone(arch), meta)
    assert _mode(art) == 0o777 & ~umask
    for f in art.iterdir():
        assert _mode(f) == 0o666 & ~umask, f.name
