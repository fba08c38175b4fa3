"""The aiortc and aiohttp internals babelcall relies on (``transports/compat.py``) exist in the
installed versions: an upgrade that moves one fails here, not in a call. And the pins in
pyproject.toml keep an unchecked upgrade from being installed at all."""

import asyncio
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from babelcall.transports import compat


def test_every_private_attribute_babelcall_uses_exists():
    async def main():
        missing = compat.missing()
        await asyncio.sleep(0)  # the probe's peer connection closes
        return missing

    assert asyncio.run(main()) == []


def test_the_installed_versions_are_within_the_pins():
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    deps = tomllib.loads(text)["project"]["dependencies"]
    for name in ("aiortc", "aiohttp"):
        (spec,) = [d for d in deps if re.match(rf"{name}\b", d)]
        upper = re.search(r"<\s*([\d.]+)", spec)
        assert upper, f"{name} needs an upper bound (the internals are checked per version)"
        installed = tuple(int(x) for x in version(name).split(".")[:2])
        assert installed < tuple(int(x) for x in upper.group(1).split(".")[:2]), spec
    assert any(re.match(r"pyOpenSSL\b", d, re.I) for d in deps)  # transports/dtls.py
