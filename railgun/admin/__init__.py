"""
The admin endpoint of a role: Prometheus metrics, the statistics document,
health and readiness probes and a live dashboard, all read from the
counters the roles keep (L{railgun.stats}).
"""

from railgun.admin.service import AdminService

__all__ = ["AdminService"]
