"""Which proxy a URL goes through, by HTTP_PROXY, HTTPS_PROXY and NO_PROXY."""

from __future__ import annotations

import pytest

from agentrt._proxy import proxy_for

P = "http://proxy.internal:3128"


@pytest.mark.parametrize(
    ("url", "environ", "proxy"),
    [
        ("http://api.example.com/v1", {}, None),
        ("http://api.example.com/v1", {"HTTP_PROXY": P}, P),
        ("https://api.example.com/v1", {"HTTP_PROXY": P}, None),
        ("https://api.example.com/v1", {"HTTPS_PROXY": P}, P),
        ("https://api.example.com/v1", {"https_proxy": P, "HTTPS_PROXY": "http://other:1"}, P),
        ("http://api.example.com/v1", {"HTTP_PROXY": "proxy.internal:3128"}, P),
        ("http://api.example.com/v1", {"HTTP_PROXY": "  "}, None),
        ("http://api.example.com/v1", {"HTTP_PROXY": P, "NO_PROXY": "example.com"}, None),
        ("http://api.example.com/v1", {"HTTP_PROXY": P, "no_proxy": ".example.com"}, None),
        ("http://example.com/v1", {"HTTP_PROXY": P, "NO_PROXY": ".example.com"}, None),
        ("http://badexample.com/v1", {"HTTP_PROXY": P, "NO_PROXY": "example.com"}, P),
        ("http://10.0.0.5:8000/v1", {"HTTP_PROXY": P, "NO_PROXY": "10.0.0.5:8000"}, None),
        ("http://10.0.0.5:8001/v1", {"HTTP_PROXY": P, "NO_PROXY": "10.0.0.5:8000"}, P),
        ("http://API.Example.com/v1", {"HTTP_PROXY": P, "NO_PROXY": " x.org , example.COM"}, None),
        ("http://anything/v1", {"HTTP_PROXY": P, "NO_PROXY": "*"}, None),
        ("http://[::1]:8000/v1", {"HTTP_PROXY": P, "NO_PROXY": "::1"}, None),
        ("http://[::1]:8000/v1", {"HTTP_PROXY": P, "NO_PROXY": "[::1]:8000"}, None),
        ("http://[::1]:8000/v1", {"HTTP_PROXY": P, "NO_PROXY": "[::1]:9000"}, P),
        ("http://10.1.2.3/v1", {"HTTP_PROXY": P, "NO_PROXY": "10.0.0.0/8"}, None),
        ("http://11.1.2.3/v1", {"HTTP_PROXY": P, "NO_PROXY": "10.0.0.0/8"}, P),
        ("http://host.example/v1", {"HTTP_PROXY": P, "NO_PROXY": "10.0.0.0/8"}, P),
        ("http://host.example/v1", {"HTTP_PROXY": P, "NO_PROXY": "host.example:80"}, None),
        ("https://host.example/v1", {"HTTPS_PROXY": P, "NO_PROXY": "host.example:80"}, P),
    ],
)
def test_the_proxy_of_a_url(url: str, environ: dict[str, str], proxy: str | None) -> None:
    assert proxy_for(url, environ) == proxy
