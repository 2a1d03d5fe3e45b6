"""
Railgun for Twisted: a persistent, multiplexed, mutually-authenticated TLS
link between a CDN edge and a daemon next to the origin, with delta
compression of dynamic pages.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup


def _version() -> str:
    """
    The version, from its one source: C{__version__} in railgun/__init__.py
    (read, not imported: building must not need the dependencies).
    """
    source = (Path(__file__).parent / "railgun" / "__init__.py").read_text("utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', source, re.MULTILINE)
    if match is None:
        raise RuntimeError('no __version__ = "..." line in railgun/__init__.py')
    return match.group(1)


setup(
    name="railgun-twisted",
    version=_version(),
    description="Railgun (edge <-> origin WAN accelerator) re-implemented on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["railgun", "railgun.*"]) + ["twisted.plugins"],
    package_data={
        "twisted": ["plugins/railgun_plugin.py"],
        "railgun.admin": ["static/*"],
    },
    install_requires=[
        # From the oldest Twisted the whole suite passes on (tox -e
        # py311-twistedoldest; before 26.10 twistd exits 0 on a usage error,
        # before 26.4 TLS refusals differ) to the next major release, which
        # may drop what railgun/_compat relies on (tests/test_compat.py).
        "twisted[tls]>=26.10,<27",
        "treq>=24.9",
        "pyopenssl>=24.0",
        "service-identity>=24.1",
        "attrs>=23.1",
        "hpack>=4.0",
        "zstandard>=0.22",
        # zstandard's cffi backend: bases hashed once at the best level.
        "cffi>=1.15",
        "brotli>=1.1",
        "uhashring>=2.3",
        "prometheus-client>=0.20",
    ],
    extras_require={
        "test": ["hypothesis>=6.100"],
        "dev": [
            "hypothesis>=6.100",
            "mypy>=1.10",
            "mypy-zope>=1.0",
            "ruff>=0.5",
            "tox>=4",
        ],
    },
    entry_points={"console_scripts": ["railgun = railgun.cli:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: Proxy Servers",
    ],
)
