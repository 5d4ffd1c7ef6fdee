"""The SSRF check every webhook URL passes, when saved and again at delivery."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobplatform.destinations import DestinationRefused, check
from tests.conftest import ROOT


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook",          # loopback
    "http://[::1]:8080/hook",         # loopback, IPv6
    "http://10.1.2.3/hook",           # private
    "http://192.168.0.10/hook",       # private
    "http://172.16.5.4/hook",         # private
    "http://169.254.169.254/latest",  # link-local: the cloud metadata service
    "http://[fe80::1]/hook",          # link-local, IPv6
    "http://100.64.0.1/hook",         # shared address space (carrier-grade NAT)
    "http://224.0.0.1/hook",          # multicast
    "http://240.0.0.1/hook",          # reserved
    "http://0.0.0.0/hook",            # unspecified
    "http://[::ffff:127.0.0.1]/hook",  # loopback dressed as IPv6
    "http://localhost:9000/hook",     # a name that resolves to loopback
])
def test_addresses_outside_the_public_internet_are_refused(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = []

    with pytest.raises(DestinationRefused) as refused:
        check(url)

    assert refused.value.code == "destination_refused"


@pytest.mark.parametrize("url", ["ftp://93.184.215.14/x", "file:///etc/passwd", "gopher://93.184.215.14/",
                                 "http://", "not a url", "http://93.184.215.14:99999/", ""])
def test_what_is_not_an_http_url_is_invalid(url):
    with pytest.raises(DestinationRefused) as refused:
        check(url)

    assert refused.value.code == "invalid_destination"


def test_a_host_that_does_not_resolve_is_invalid():
    with pytest.raises(DestinationRefused) as refused:
        check("https://no-such-host.invalid/hook")

    assert refused.value.code == "invalid_destination"


def test_a_public_address_is_allowed_with_its_port():
    destination = check("https://93.184.215.14/hook")

    assert (destination.scheme, destination.port, destination.addresses) == ("https", 443, ("93.184.215.14",))


def test_the_allow_list_admits_its_networks_and_nothing_else(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_DESTINATIONS = ["127.0.0.1/32"]

    assert check("http://127.0.0.1:8080/hook").addresses == ("127.0.0.1",)
    with pytest.raises(DestinationRefused):
        check("http://127.0.0.2/hook")
    with pytest.raises(DestinationRefused):
        check("http://10.0.0.1/hook")


def test_a_malformed_allow_list_stops_the_process_at_start_up():
    env = {"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "1", "DATABASE_URL": "postgres://x@127.0.0.1/x",
           "JOBPLATFORM_ENV_FILE": "", "WEBHOOK_ALLOW_PRIVATE_DESTINATIONS": "127.0.0.1/32,10.0.0.0/33"}

    result = subprocess.run([sys.executable, "-c", "import jobplatform.settings.web"], env=env, capture_output=True,
                            text=True, cwd=ROOT)

    assert result.returncode != 0
    assert "WEBHOOK_ALLOW_PRIVATE_DESTINATIONS: '10.0.0.0/33'" in result.stderr
