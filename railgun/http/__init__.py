"""
Pure HTTP translation logic for the edge and origin roles: no sockets, no
reactor.

  - L{railgun.http.headers}: hop-by-hop stripping, forwarding headers,
    field validation.
  - L{railgun.http.messages}: request and response heads in link header
    blocks, and the reserved C{railgun-*} control headers.
  - L{railgun.http.diagnostic}: the C{Railgun} diagnostic response header.
  - L{railgun.http.routing}: host normalization, host maps, origin URLs and
    link addresses.
"""
