"""
The edge role: an HTTP/1.1 server that sends every request as a stream over
a persistent link to the origin role serving its Host.
"""
