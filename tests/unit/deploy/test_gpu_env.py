"""scripts/gpu_env.py: carried wheels unpacked only where this Python lacks them or has them older, and the
project's packages laid out as installed, importable without installing anything."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("gpu_env", ROOT / "scripts" / "gpu_env.py")
gpu_env = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_env)


def wheel(folder: Path, name: str, version: str) -> Path:
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n")
        archive.writestr(f"{name}-{version}.dist-info/METADATA", f"Name: {name}\nVersion: {version}\n")
    return path


def test_versions_compare_as_releases():
    assert gpu_env.version_key("1.85.1") > gpu_env.version_key("1.9")
    assert gpu_env.version_key("7.36.2") > gpu_env.version_key("5.29.3")
    assert gpu_env.version_key("2.0.0rc1") < gpu_env.version_key("2.0.0")
    assert gpu_env.wheel_name(Path("grpcio_health_checking-1.85.1-py3-none-any.whl")) == \
        ("grpcio-health-checking", "1.85.1")


def test_a_wheel_fits_this_python_by_its_tags():
    ours = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert gpu_env.fits_this_python(Path("fastapi-0.165.0-py3-none-any.whl"))
    assert gpu_env.fits_this_python(Path(f"grpcio-1.85.3-{ours}-{ours}-manylinux2014_x86_64.whl"))
    assert gpu_env.fits_this_python(Path("protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl"))
    assert not gpu_env.fits_this_python(Path("grpcio-1.85.3-cp39-cp39-manylinux2014_x86_64.whl"))
    assert not gpu_env.fits_this_python(Path("thing-1.0-cp399-abi3-manylinux2014_x86_64.whl"))


def test_wheels_for_another_python_are_refused_saying_how_to_make_them(tmp_path):
    (tmp_path / "grpcio-1.85.3-cp39-cp39-manylinux2014_x86_64.whl").write_bytes(b"")
    with pytest.raises(SystemExit, match="GPU_PYTHON_VERSION"):
        gpu_env.unpack_wheels(tmp_path, tmp_path / "env")


def test_only_what_is_missing_or_older_is_unpacked(tmp_path):
    wheels, into = tmp_path / "wheels", tmp_path / "env"
    wheels.mkdir()
    wheel(wheels, "specdec_absent_dist", "1.0")  # not installed here
    wheel(wheels, "pyyaml", "0.1")  # installed here, and newer
    assert gpu_env.unpack_wheels(wheels, into) == ["specdec-absent-dist 1.0"]
    assert (into / "specdec_absent_dist" / "__init__.py").exists() and not (into / "pyyaml").exists()


def test_the_linked_packages_import_from_any_directory_without_an_install(tmp_path):
    gpu_env.link_packages(tmp_path)
    gpu_env.link_packages(tmp_path)  # again: safe to rerun
    code = ("import specdec.orchestrator.serving.placement as p, specdec.services.runtime.kv_cache as k, "
            "specdec.demo_pair; print(p.__file__)")
    env = os.environ | {"PYTHONPATH": str(tmp_path), "PYTHONSAFEPATH": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(tmp_path / "specdec" / "orchestrator"))
