"""
The HTTP client both roles use to reach origin servers: the origin role's
fetches and the edge's direct fallback. Neither role imports the other;
both import this.
"""
