"""py-eureka-client (unmodified) against a Eureka registry.

Registers APP with an instanceId and a 1 s heartbeat (lease 5 s); the same timer fetches deltas,
which the library reads as XML. OPTIONS, a JSON object, may set "metadata" (replacing the default
{"apiml.routes.ws_v1.gatewayUrl": "ws/v1"}), "renewal" and "duration" (seconds), and "tls" for an https
REGISTRY_URL: {"ca": PEM file to trust, "cert": client certificate PEM, "key": its key} ("cert" and "key"
optional), given to the library through its public set_http_client hook. Reports on stdout one JSON object a line:
  {"event": "registered"}   {"event": "deregistered"}
  {"event": "discovered", "instances": [{"instanceId": .., "port": .., "status": ..}]}  (DISCOVER's, on change)
SIGTERM cancels the registration (DELETE) and exits.

Usage: python py_client.py REGISTRY_URL APP PORT DISCOVER [OPTIONS]
"""

import asyncio
import json
import os
import signal
import ssl
import sys
from io import BytesIO

import httpx
from py_eureka_client import http_client
from py_eureka_client.eureka_client import EurekaClient


def say(event: dict) -> None:
    print(json.dumps(event), flush=True)


class TlsHttpClient(http_client.HttpClient):
    """The library's HTTP hook over TLS: each request through an httpx client verifying with `context`
    (which may carry a client certificate); error statuses raised as the library expects."""

    def __init__(self, context: ssl.SSLContext):
        self.context = context

    async def urlopen(self, request=None, data=None, timeout=None):
        if isinstance(request, str):
            request = http_client.HttpRequest(request)
        if data is not None:
            request.content = data
        try:
            async with httpx.AsyncClient(verify=self.context, timeout=timeout) as client:
                response = await client.request(request.method, request.url, headers=request.headers, content=request.content)
        except httpx.RequestError as error:
            raise http_client.URLError(str(error)) from error
        if response.is_error:
            raise http_client.HTTPError(str(response.url), response.status_code, response.reason_phrase, response.headers, BytesIO(response.content))
        return http_client.HttpResponse(response)


def tls_context(tls: dict) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls["ca"])
    if "cert" in tls:
        context.load_cert_chain(tls["cert"], tls["key"])
    return context


async def main(url: str, app: str, port: int, discover: str, options: dict) -> None:
    if "tls" in options:
        http_client.set_http_client(TlsHttpClient(tls_context(options["tls"])))
    client = EurekaClient(
        eureka_server=url,
        app_name=app,
        instance_id=f"127.0.0.1:{app}:{port}",
        instance_host="127.0.0.1",
        instance_ip="127.0.0.1",
        instance_port=port,
        renewal_interval_in_secs=options.get("renewal", 1),
        duration_in_secs=options.get("duration", 5),
        vip_adr=f"{app}.vip",
        metadata=options.get("metadata", {"apiml.routes.ws_v1.gatewayUrl": "ws/v1"}),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await client.start()
    say({"event": "registered"})
    last = None
    while not stop.is_set():
        instances = [
            {"instanceId": i.instanceId, "port": i.port.port, "status": i.status}
            for i in client.applications.get_application(discover).instances
        ]
        if instances != last:
            last = instances
            say({"event": "discovered", "instances": instances})
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.2)
        except asyncio.TimeoutError:
            pass
    await client.stop()
    say({"event": "deregistered"})
    # The library's heartbeat thread never ends and registers again when it finds the client
    # stopped; leave before it wakes up.
    os._exit(0)


if __name__ == "__main__":
    registry_url, app_name, instance_port, discover_app = sys.argv[1:5]
    extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    asyncio.run(main(registry_url, app_name, int(instance_port), discover_app, extra))
