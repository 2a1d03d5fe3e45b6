"""
The example of docs/embedding.md runs as written.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "embed.py"


class EmbeddingExampleTests(TestCase):
    """
    docs/examples/embed.py, the program docs/embedding.md shows.
    """

    timeout = 30

    def test_example(self):
        """
        The example starts both services in this reactor, fetches through
        the edge, gets the origin's page and stops cleanly.
        """
        spec = importlib.util.spec_from_file_location("railgun_embed_example", EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.print = lambda *args, **kwargs: None  # keep trial's output clean
        d = Deferred.fromCoroutine(module.main(reactor))
        d.addCallback(self.assertEqual, b"<h1>hello from the origin</h1>\n")
        return d
