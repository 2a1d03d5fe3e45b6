"""
Every use of Twisted's private API, fenced in one place.

Twisted's underscore names can change in any release. Each module here wraps
one such use behind a small public function, and C{tests/test_compat.py}
checks that the private attributes it relies on still exist, so an upgrade
that breaks one fails a named test instead of a request in production.
"""
