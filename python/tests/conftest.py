"""Shared fixtures of the Python package's tests: the CLI, the stories260K model, a scratch dir."""
import os
import subprocess

import pytest

SOURCE_DIR = os.environ.get("PHASEMAP_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BINARY = os.environ.get("PHASEMAP_BINARY", os.path.join(SOURCE_DIR, "build", "phasemap"))
MODEL = os.path.join(os.path.dirname(SOURCE_DIR), "shared", "models", "stories260K.gguf")


@pytest.fixture(scope="session")
def model_path():
    if not os.path.exists(MODEL):
        pytest.skip("stories260K.gguf not present in ../shared/models")
    return MODEL


@pytest.fixture(scope="session")
def model(model_path):
    import phasemap
    return phasemap.Model(model_path, threads=1)


def cli(*args, check=True):
    """Runs the phasemap CLI; returns (returncode, stdout, stderr)."""
    p = subprocess.run([BINARY, *map(str, args)], capture_output=True, text=True, env={**os.environ, "PHASEMAP_THREADS": "1"})
    if check and p.returncode != 0:
        raise AssertionError(f"phasemap {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr}")
    return p.returncode, p.stdout, p.stderr
