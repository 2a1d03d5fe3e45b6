"""
The trial test suite.

Property tests (hypothesis) run derandomized by default: the same examples
on every run, so a result does not depend on luck and CI is deterministic.
To search new examples, as when changing a parser or the link protocol,
run with C{HYPOTHESIS_PROFILE=explore} (random examples, new ones each run).
"""

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
