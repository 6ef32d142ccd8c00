"""Install detectron2 into the current interpreter; idempotent, verified at the end.

detectron2 is not published on the package registry under its own name. In order:

1. Already usable (``import detectron2.modeling`` works and the model-zoo configs are there)? Done.
2. The upstream source (``git+https://github.com/facebookresearch/detectron2.git``), as upstream documents.
   Reachability is probed first with a short ``git ls-remote`` timeout, so machines without network fall
   through quickly; with network, the build (C++ extension included) gets a long timeout.
3. Otherwise ``pb1-detectron2==0.6``, an sdist republish of detectron2 0.6 that does not install as
   published. We download it from the configured index (``PIP_INDEX_URL`` / pip config, else pip's own
   default index), check its sha256, unpack it to a temporary folder and apply these fix-ups there:

   - ``setup.py``: build no C++ extension (``detectron2/layers/csrc`` is not in the sdist) and package the
     model-zoo YAML configs that ship in ``detectron2/model_zoo/configs`` (the original glob misses them);
     drop the requirements only caffe2 export, formatting and tensorboard need (black, future, pydot,
     tensorboard), so ``pip check`` stays clean.
   - ``layers/deform_conv.py``, ``layers/rotated_boxes.py``, ``layers/roi_align_rotated.py``,
     ``evaluation/fast_eval_api.py``: ``from detectron2 import _C`` becomes optional; a use of a missing op
     raises an ImportError saying so. Rotated boxes and deformable convolutions are out of scope; COCO
     evaluation runs with ``COCOEvaluator(..., use_fast_impl=False)`` (plain pycocotools).
   - numpy 2 removed the aliases ``np.bool/np.int/np.float/np.str/np.object``: use the builtins.
   - Pillow 10 removed ``Image.LINEAR``: use ``Image.BILINEAR`` (the same filter).
   - setuptools without ``pkg_resources``: ``model_zoo.get_config_file`` resolves the packaged file itself.

   then ``pip install --no-build-isolation --no-deps`` it, and install the pure-python dependencies from
   its ``install_requires`` that the library paths we use import (never torch; already-satisfied ones
   are left alone). No detectron2 source is kept in this repository.

Usage: ``python tools/install_detectron2.py [--skip-upstream] [--force]``. Exit status 0 when detectron2
verifies, 1 with a message naming what failed otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

UPSTREAM_GIT = "https://github.com/facebookresearch/detectron2.git"
SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
# install_requires of detectron2 0.6 that its detection/evaluation code imports (black, pydot, future and
# tensorboard are only for caffe2 export, formatting and tensorboard writers, which we do not use).
RUNTIME_DEPS = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
]
VERIFY_CONFIG = "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"
C_EXT_MODULES = [
    "detectron2/layers/deform_conv.py",
    "detectron2/layers/rotated_boxes.py",
    "detectron2/layers/roi_align_rotated.py",
    "detectron2/evaluation/fast_eval_api.py",
]
MISSING_C_STUB = """try:
    from detectron2 import _C
except ImportError:  # byol-bench install: built without the C++ extension

    class _MissingCExtension:
        def __getattr__(self, name):
            raise ImportError(
                f"detectron2._C.{name} is unavailable: detectron2 was installed without its C++ "
                "extension (tools/install_detectron2.py); rotated boxes, deformable convolutions and "
                "the fast COCO evaluation are not supported, use COCOEvaluator(use_fast_impl=False)"
            )

    _C = _MissingCExtension()
"""
NUMPY_ALIASES = {"bool": "bool", "int": "int", "float": "float", "str": "str", "object": "object"}


def log(msg: str) -> None:
    print(f"install_detectron2: {msg}", flush=True)


def pip(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], timeout=timeout, check=False)


# ---- verification -------------------------------------------------------------------------------------


def verify() -> str | None:
    """None when detectron2 is usable here, else what is wrong (checked in a fresh interpreter)."""
    code = (
        "import os, detectron2, detectron2.modeling, detectron2.evaluation, detectron2.engine\n"
        "from detectron2 import model_zoo\n"
        f"p = model_zoo.get_config_file({VERIFY_CONFIG!r})\n"
        "assert os.path.isfile(p), p\n"
        f"cfg = model_zoo.get_config({VERIFY_CONFIG!r})\n"
        "print(detectron2.__version__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


# ---- 2. upstream source ---------------------------------------------------------------------------------


def try_upstream(probe_timeout: float, build_timeout: float) -> bool:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        probe = subprocess.run(
            ["git", "ls-remote", "--heads", UPSTREAM_GIT],
            capture_output=True,
            timeout=probe_timeout,
            env=env,
            check=False,
        )
    except (subprocess.TimeoutExpired, FileNotFoundError) as e:
        log(f"upstream source not reachable ({type(e).__name__}); using the registry sdist")
        return False
    if probe.returncode != 0:
        log("upstream source not reachable (git ls-remote failed); using the registry sdist")
        return False
    log(f"installing from {UPSTREAM_GIT} (builds the C++ extension)")
    try:
        proc = pip("install", "--no-build-isolation", f"git+{UPSTREAM_GIT}", timeout=build_timeout)
    except subprocess.TimeoutExpired:
        log(f"upstream install timed out after {build_timeout:.0f} s; using the registry sdist")
        return False
    if proc.returncode != 0:
        log("upstream install failed; using the registry sdist")
        return False
    return True


# ---- 3. registry sdist with fix-ups -------------------------------------------------------------------


def index_url() -> str:
    """The primary index pip would use: PIP_INDEX_URL, pip config, else pip's own default."""
    url = os.environ.get("PIP_INDEX_URL", "").strip()
    if not url:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
            check=False,
        )
        url = proc.stdout.strip() if proc.returncode == 0 else ""
    if not url:
        from pip._internal.models.index import PyPI

        url = PyPI.simple_url
    return url.rstrip("/")


def find_sdist_url(index: str, timeout: float = 60) -> tuple[str, str]:
    """(download URL, sha256) of the sdist from the index's PEP 503 project page."""
    page_url = f"{index}/{SDIST_NAME}/"
    with urllib.request.urlopen(page_url, timeout=timeout) as r:
        html = r.read().decode("utf-8", "replace")
    filename = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
    for href in re.findall(r'href="([^"]+)"', html):
        href = href.replace("&amp;", "&")
        base, _, frag = href.partition("#")
        if base.rsplit("/", 1)[-1] == filename:
            sha = frag.split("=", 1)[1] if frag.startswith("sha256=") else ""
            return urllib.parse.urljoin(page_url, base), sha
    raise RuntimeError(f"{filename} is not listed on {page_url}")


def download_sdist(dest: Path) -> Path:
    index = index_url()
    url, listed_sha = find_sdist_url(index)
    if listed_sha and listed_sha != SDIST_SHA256:
        raise RuntimeError(f"index lists sha256 {listed_sha} for {url}, expected {SDIST_SHA256}")
    log(f"downloading {url.rsplit('/', 1)[-1]} from {index}")
    path = dest / url.rsplit("/", 1)[-1]
    with urllib.request.urlopen(url, timeout=120) as r, open(path, "wb") as f:
        while chunk := r.read(1 << 20):
            f.write(chunk)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if sha != SDIST_SHA256:
        raise RuntimeError(f"sha256 of the downloaded sdist is {sha}, expected {SDIST_SHA256}")
    return path


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    if text.count(old) < count:
        raise RuntimeError(f"fix-up does not apply: {old!r} not found in {path.name}")
    path.write_text(text.replace(old, new))


def apply_fixups(src: Path) -> None:
    """The documented compatibility fix-ups (module docstring), applied to the unpacked sdist."""
    # setup.py: no C++ extension; package the model-zoo configs that are inside the package folder
    setup_py = src / "setup.py"
    _edit(setup_py, "ext_modules=get_extensions(),", "ext_modules=[],")
    _edit(
        setup_py,
        'package_data={"detectron2.model_zoo": get_model_zoo_configs()},',
        'package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]},',
    )
    # requirements only for caffe2 export, code formatting and tensorboard writers, which we never use
    for req in ['"black==21.4b2",', '"future",', '"pydot",', '"tensorboard",']:
        _edit(setup_py, req, "")
    configs = list((src / "detectron2/model_zoo/configs").rglob("*.yaml"))
    if not configs:
        raise RuntimeError("the sdist has no detectron2/model_zoo/configs/*.yaml")
    # eager `_C` imports become optional
    for rel in C_EXT_MODULES:
        _edit(src / rel, "from detectron2 import _C\n", MISSING_C_STUB)
    # numpy 2 aliases and Pillow 10 constants, everywhere in the package
    alias = re.compile(r"\bnp\.(" + "|".join(NUMPY_ALIASES) + r")\b")
    for py in (src / "detectron2").rglob("*.py"):
        text = py.read_text()
        new = alias.sub(lambda m: NUMPY_ALIASES[m.group(1)], text).replace("Image.LINEAR", "Image.BILINEAR")
        if new != text:
            py.write_text(new)
    # pkg_resources is gone from recent setuptools: resolve the packaged config file directly
    mz = src / "detectron2/model_zoo/model_zoo.py"
    _edit(mz, "import pkg_resources\n", "")
    _edit(
        mz,
        'pkg_resources.resource_filename(\n        "detectron2.model_zoo", os.path.join("configs", config_path)\n    )',
        'os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", config_path)',
    )


def install_sdist() -> None:
    with tempfile.TemporaryDirectory(prefix="byol-d2-") as tmp:
        sdist = download_sdist(Path(tmp))
        with tarfile.open(sdist) as tar:
            try:
                tar.extractall(tmp, filter="data")
            except TypeError:  # Python without extraction filters (< 3.11.4); the sdist is sha256-checked
                tar.extractall(tmp)
        src = Path(tmp) / f"{SDIST_NAME}-{SDIST_VERSION}"
        apply_fixups(src)
        log("installing the fixed-up sdist (no C++ extension)")
        proc = pip("install", "-q", "--no-build-isolation", "--no-deps", "--no-cache-dir", str(src))
        if proc.returncode != 0:
            raise RuntimeError("pip install of the fixed-up sdist failed (see pip's output above)")
    log("installing pure-python dependencies that are missing")
    proc = pip("install", "-q", *RUNTIME_DEPS)
    if proc.returncode != 0:
        raise RuntimeError("pip install of detectron2's dependencies failed (see pip's output above)")


# ---- entry point ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-upstream", action="store_true", help="do not try the upstream git source")
    ap.add_argument("--force", action="store_true", help="reinstall even if detectron2 verifies")
    ap.add_argument("--probe-timeout", type=float, default=20.0, help="seconds for the upstream probe")
    ap.add_argument("--build-timeout", type=float, default=3600.0, help="seconds for an upstream build")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    if not args.force and verify() is None:
        log(f"detectron2 already installed and verified ({time.perf_counter() - t0:.1f} s)")
        return 0
    try:
        ok = not args.skip_upstream and try_upstream(args.probe_timeout, args.build_timeout)
        if ok and (problem := verify()) is not None:
            log(f"upstream install does not verify ({problem}); using the registry sdist")
            ok = False
        if not ok:
            install_sdist()
    except Exception as e:  # noqa: BLE001  one clear message for any failure on the way
        log(f"FAILED: {e}")
        return 1
    problem = verify()
    if problem is not None:
        log(f"FAILED verification: {problem}")
        return 1
    log(f"detectron2 installed and verified ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
