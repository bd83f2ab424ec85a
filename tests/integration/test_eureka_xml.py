"""The embedded registry's XML, parsed the way py-eureka-client parses it: with ElementTree.

ElementTree (expat) refuses a whole document as soon as one element name is not an XML name, and
py-eureka-client then loses discovery silently. Metadata keys are user data (any allowed client may
`PUT .../metadata?key=value`), so these tests store keys that once reached the document as markup
(`@x="1"><evil/><y` became attributes and an `<evil/>` element), as bare text (`$`) or as names
expat refuses (`x²`, `ª`, `xⅠ`), then parse every XML reply strictly. The registry's own Rust tests
check the writer against the XML name production; this checks it against a real parser.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from support import http_request, registry_gateway_config, start_gateway

APP = "XMLSVC"
ID = "xml-1"

# The key of `PUT .../metadata?%40x%3D%221%22%3E%3Cevil%2F%3E%3Cy=v`, then keys expat refuses as
# names, and keys with the escape characters themselves.
HOSTILE_QUERY = "%40x%3D%221%22%3E%3Cevil%2F%3E%3Cy=v"
HOSTILE_KEYS = ['@x="1"><evil/><y', "$", "@class", "x\u00b2", "\u00aa", "x\u2160", "1st", "a:b", "\u00e9t\u00e9",
                "emoji\U0001f600", "my_key$1", "_.0041", "-x"]


@pytest.fixture
def gw(log_dir, request):
    gateway = start_gateway(log_dir, f"registry-xml-{request.node.name}", registry_gateway_config())
    yield gateway
    gateway.child.stop()


def register(gw) -> None:
    body = {"instance": {
        "instanceId": ID, "hostName": "127.0.0.1", "app": APP, "ipAddr": "127.0.0.1", "status": "UP",
        "port": {"$": 9, "@enabled": "true"}, "vipAddress": APP.lower(),
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
        "metadata": {"apiml.routes.ws_v1.gatewayUrl": "ws/v1"},
    }}
    status, reply = http_request(f"{gw.eureka}/apps/{APP}", "POST", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 204, (status, reply)


def put_metadata(gw, query: str) -> int:
    return http_request(f"{gw.eureka}/apps/{APP}/{ID}/metadata?{query}", "PUT")[0]


def parse_as_py_eureka_client(gw, path: str) -> ET.Element:
    """GET `path` without an Accept header and parse the decoded text with ElementTree, as
    py-eureka-client 0.13 does; a parse error fails the test."""
    status, body = http_request(f"{gw.eureka}{path}")
    assert status == 200, (path, status, body[:200])
    return ET.fromstring(body.decode("utf-8"))


def unescape_name(name: str) -> str:
    """XStream's name escaping reversed: `__` is `_`, `_-` is `$`, `_.xxxx` one UTF-16 unit."""
    units: list[int] = []
    out = []
    i = 0
    while i < len(name):
        hex_unit = re.match(r"_\.([0-9a-fA-F]{4})", name[i:])
        if hex_unit:
            units.append(int(hex_unit.group(1), 16))
            i += 6
            continue
        if units:
            out.append(b"".join(u.to_bytes(2, "big") for u in units).decode("utf-16-be"))
            units = []
        if name.startswith("__", i):
            out.append("_")
            i += 2
        elif name.startswith("_-", i):
            out.append("$")
            i += 2
        else:
            out.append(name[i])
            i += 1
    if units:
        out.append(b"".join(u.to_bytes(2, "big") for u in units).decode("utf-16-be"))
    return "".join(out)


def test_hostile_metadata_keys_leave_every_xml_document_parseable(gw):
    import urllib.parse

    register(gw)
    assert put_metadata(gw, HOSTILE_QUERY) == 200
    assert put_metadata(gw, urllib.parse.urlencode([(key, "v") for key in HOSTILE_KEYS])) == 200

    for path in ("/apps", "/apps/", "/apps/delta", f"/apps/{APP}", f"/apps/{APP}/{ID}", f"/instances/{ID}",
                 f"/vips/{APP.lower()}"):
        root = parse_as_py_eureka_client(gw, path)
        assert root.find(".//evil") is None, path

    metadata = parse_as_py_eureka_client(gw, f"/apps/{APP}/{ID}").find("metadata")
    assert metadata is not None and metadata.attrib == {}, "no metadata key becomes an attribute"
    assert (metadata.text or "").strip() == "", "no metadata key becomes text"
    keys = {unescape_name(child.tag): child.text for child in metadata}
    assert {key: keys.get(key) for key in HOSTILE_KEYS} == {key: "v" for key in HOSTILE_KEYS}
    assert keys["apiml.routes.ws_v1.gatewayUrl"] == "ws/v1"


def test_too_much_metadata_is_refused_with_400(gw):
    register(gw)
    status, body = http_request(f"{gw.eureka}/apps/{APP}/{ID}/metadata?" + "&".join(f"k{n}=v" for n in range(300)), "PUT")
    assert status == 400 and body.startswith(b"Metadata too large"), (status, body)
    assert parse_as_py_eureka_client(gw, f"/apps/{APP}/{ID}").find("metadata/k0") is None, "nothing was merged"
