"""Builds the Lambda code asset on the host, without Docker.

CDK calls ``LocalPythonBundler.try_bundle`` instead of starting the bundling image. It
installs ``lambdas/requirements.txt`` as wheels for the Lambda platform (CPython 3.12,
manylinux aarch64) and copies the handlers plus the pure ``racecheck.core`` package. The
offline detectors and the local runner are never bundled.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import cast

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

LAMBDA_PYTHON_VERSION = "3.12"
# Pillow publishes manylinux_2_28 wheels only for some builds, hence both tags.
LAMBDA_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
# Only lambdas/ and racecheck/core reach the asset; they also define its source hash, so
# editing a test or a detector does not produce a new Lambda version.
_ASSET_EXCLUDES = [
    "*",
    "!lambdas",
    "!lambdas/**",
    "!racecheck",
    "!racecheck/__init__.py",
    "!racecheck/core",
    "!racecheck/core/**",
    "**/__pycache__",
    "**/*.pyc",
]


def pip_install_command(requirements: Path, target: Path) -> list[str]:
    platform_args = [arg for tag in LAMBDA_PLATFORMS for arg in ("--platform", tag)]
    return [
        sys.executable, "-m", "pip", "install",
        "--requirement", str(requirements),
        "--target", str(target),
        "--implementation", "cp",
        "--python-version", LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
        *platform_args,
        "--quiet", "--disable-pip-version-check", "--no-compile",
    ]


def copy_sources(repository_root: Path, output_dir: Path) -> None:
    handlers_out = output_dir / "lambdas"
    handlers_out.mkdir(parents=True, exist_ok=True)
    for handler in sorted((repository_root / "lambdas").glob("*.py")):
        shutil.copy2(handler, handlers_out / handler.name)
    package_out = output_dir / "racecheck"
    package_out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(repository_root / "racecheck" / "__init__.py", package_out / "__init__.py")
    shutil.copytree(
        repository_root / "racecheck" / "core",
        package_out / "core",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )


@jsii.implements(cdk.ILocalBundling)
class LocalPythonBundler:
    def __init__(self, repository_root: Path) -> None:
        self._repository_root = repository_root

    def try_bundle(self, output_dir: str, options: cdk.BundlingOptions) -> bool:
        output = Path(output_dir)
        requirements = self._repository_root / "lambdas" / "requirements.txt"
        result = subprocess.run(
            pip_install_command(requirements, output), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            # Returning False would fall back to Docker, which is not available: fail loudly.
            raise RuntimeError(f"pip could not bundle {requirements}:\n{result.stderr}")
        copy_sources(self._repository_root, output)
        return True


def lambda_code(repository_root: Path) -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(repository_root),
        exclude=_ASSET_EXCLUDES,
        ignore_mode=cdk.IgnoreMode.GLOB,
        bundling=cdk.BundlingOptions(
            # Never pulled: the local bundler always succeeds or raises.
            image=lambda_.Runtime.PYTHON_3_12.bundling_image,
            # jsii calls try_bundle(output_dir, options) positionally, whereas the generated
            # Python protocol spells the options out as keywords: hence the cast.
            local=cast(cdk.ILocalBundling, LocalPythonBundler(repository_root)),
        ),
    )
