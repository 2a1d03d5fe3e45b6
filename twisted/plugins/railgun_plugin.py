"""
The twistd plugin: C{twistd railgun --role edge|origin|both}. Only a
L{ServiceMaker} here; the options and the service live in L{railgun.tap}.
"""

from twisted.application.service import ServiceMaker

railgun = ServiceMaker(
    "Railgun",
    "railgun.tap",
    "Railgun: multiplexed mutual-TLS link and delta compression between a CDN edge and an origin",
    "railgun",
)
