"""The gateway under test and one of its clients, as pytest fixtures for the role scenarios.

A test module names its gateway in ``SITE`` and imports both by name
(``from site_fixtures import client, site``); pytest finds fixtures in the module's namespace.
"""

from __future__ import annotations

import pytest

import labtools as L


@pytest.fixture(scope="module")
def site(request) -> dict:
    """The compiled policy of the module's SITE; fails (lab required) or skips when it is not up."""
    L.require_site(request.module.SITE)
    return L.compiled_site(request.module.SITE)


@pytest.fixture(scope="module")
def client(site, request) -> tuple[str, str]:
    """One registered device of the site, leased and online: (netns, address)."""
    [(ns, ip)] = L.clients(request.module.SITE, 1)
    return ns, ip
