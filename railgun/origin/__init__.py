"""
The origin role (Railgun's "listener"): accepts links from edges and fetches
each stream's request from the origin server its Host is mapped to.
"""
