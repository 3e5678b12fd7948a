"""Make specdec importable on a machine that cannot install it: no network, no Ray, the machine's own
PyTorch and transformers (the GPU check machine).

Unpacks each carried wheel (from scripts/prepare_gpu_wheels.sh) whose distribution this Python lacks or
has older, and lays out the project's packages as installed (specdec, specdec.orchestrator from
orchestrator/, ...) as links, both under one folder; prints the PYTHONPATH that puts them first (and
PYTHONSAFEPATH, so that the tree's own specdec/ folder does not shadow them), as shell `export` lines.
Needs nothing but the standard library; safe to run again.

    eval "$(python3 scripts/gpu_env.py --wheels gpu-wheels --into .gpu-env)"
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def version_key(version: str) -> tuple:
    """A sortable key of a version: its release numbers ("1.85.1" > "1.9"), a pre-release ("2.0.0rc1")
    below its release, a post-release at it."""
    match = re.match(r"(\d+(?:\.\d+)*)(.*)", version)
    if match is None:
        return ((0,), -1)
    release = tuple(int(part) for part in match.group(1).split("."))
    release += (0,) * (8 - len(release))
    suffix = match.group(2).lstrip(".").lower()
    return (release, 0 if not suffix or suffix.startswith("post") else -1)


def wheel_name(path: Path) -> tuple[str, str]:
    """(normalized distribution name, version) of a wheel file."""
    name, version = path.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def fits_this_python(path: Path) -> bool:
    """Whether a wheel's tags allow this interpreter: pure Python (py3), the stable ABI (abi3, from its
    minimum version on) or this exact CPython (cpXY)."""
    python_tag, abi_tag = path.name.removesuffix(".whl").split("-")[-3:-1]
    ours = f"cp{sys.version_info.major}{sys.version_info.minor}"
    if abi_tag == "none":
        return any(tag in ("py3", "py2.py3", ours) for tag in python_tag.split("."))
    if abi_tag == "abi3":
        return any(tag.startswith("cp3") and int(tag[3:]) <= sys.version_info.minor for tag in python_tag.split("."))
    return abi_tag == ours


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unpack_wheels(wheels: Path, into: Path) -> list[str]:
    """Unpack the wheels this Python needs into `into`; return what was unpacked ("name version")."""
    unpacked = []
    wrong = [wheel.name for wheel in sorted(wheels.glob("*.whl")) if not fits_this_python(wheel)]
    if wrong:
        raise SystemExit(f"gpu_env: {', '.join(wrong)} are not for Python {sys.version_info.major}."
                         f"{sys.version_info.minor}: make the wheels again with GPU_PYTHON_VERSION="
                         f"{sys.version_info.major}.{sys.version_info.minor} scripts/prepare_gpu_wheels.sh")
    for wheel in sorted(wheels.glob("*.whl")):
        name, version = wheel_name(wheel)
        have = installed_version(name)
        if have is not None and version_key(have) >= version_key(version):
            continue
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(into)
        unpacked.append(f"{name} {version}" + (f" (over {have})" if have else ""))
    return unpacked


def link_packages(into: Path) -> None:
    """The project's packages under `into` as pyproject maps them (package-dir), made of links."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    base = into / "specdec"
    if base.is_symlink() or base.exists():
        shutil.rmtree(base) if not base.is_symlink() else base.unlink()
    base.mkdir(parents=True)
    for entry in (ROOT / mapping["specdec"]).iterdir():
        (base / entry.name).symlink_to(entry)
    for package, folder in mapping.items():
        if package != "specdec":
            (base / package.split(".", 1)[1]).symlink_to(ROOT / folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", default=str(ROOT / "gpu-wheels"), help="folder of carried wheels")
    parser.add_argument("--into", default=str(ROOT / ".gpu-env"), help="folder to unpack and link into")
    args = parser.parse_args()
    into, wheels = Path(args.into).resolve(), Path(args.wheels)
    into.mkdir(parents=True, exist_ok=True)
    unpacked = unpack_wheels(wheels, into) if wheels.is_dir() else []
    link_packages(into)
    print(f"gpu_env: unpacked {', '.join(unpacked) or 'no wheels'}; specdec linked under {into}", file=sys.stderr)
    print(f"export PYTHONPATH={into}:{ROOT}${{PYTHONPATH:+:$PYTHONPATH}}")
    # The tree's own specdec/ (without orchestrator/ and services/, which live beside it) would come first
    # from the working directory: Python >= 3.11 leaves the working directory off sys.path with this.
    print("export PYTHONSAFEPATH=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
