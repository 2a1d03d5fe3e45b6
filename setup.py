"""
Railgun for Twisted: a persistent, multiplexed, mutually-authenticated TLS
link between a CDN edge and a daemon next to the origin, with delta
compression of dynamic pages.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

# One source for the version: railgun/__init__.py (read, not imported: the
# dependencies need not be installed yet).
VERSION = re.search(
    r'^__version__ = "([^"]+)"$',
    (Path(__file__).parent / "railgun" / "__init__.py").read_text(encoding="utf-8"),
    re.MULTILINE,
)[1]

setup(
    name="railgun-twisted",
    version=VERSION,
    description="Railgun (edge <-> origin WAN accelerator) re-implemented on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["railgun", "railgun.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/railgun_plugin.py"]},
    install_requires=[
        "twisted[tls]>=24.7",
        "treq>=24.9",
        "pyopenssl>=24.0",
        "service-identity>=24.1",
        "attrs>=23.1",
        "hpack>=4.0",
        "zstandard>=0.22",
        "brotli>=1.1",
        "uhashring>=2.3",
        "automat>=24.8",
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
