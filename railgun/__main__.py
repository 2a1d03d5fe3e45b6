"""
C{python -m railgun}: the same command line as the C{railgun} script.
"""

from railgun.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
