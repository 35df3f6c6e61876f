"""What tests need from the machine: a missing tool fails the test in CI and skips it elsewhere."""

import os
import shutil

import pytest


def require_tool(found: str | None, missing: str) -> str:
    """The tool's path; if it is missing, fail when CI is set and skip otherwise."""
    if found is not None:
        return found
    if "CI" in os.environ:
        pytest.fail(missing)
    pytest.skip(missing)


def require_program(name: str, package: str) -> str:
    """The path of a program on PATH, from the Debian package that ships it."""
    return require_tool(shutil.which(name), f"{name} is not installed (Debian package {package})")
