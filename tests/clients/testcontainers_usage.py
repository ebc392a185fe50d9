"""testcontainers-python against rctrd: a generic container, waited for by its log, removed.

``python testcontainers_usage.py IMAGE``; prints one JSON object.  Ryuk, the
reaper container, is off (``TESTCONTAINERS_RYUK_DISABLED=true``, set by the
test): it is an image from Docker Hub, and the context manager removes the
container itself.
"""

import json
import sys
import urllib.request

from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

image = sys.argv[1]
seen = {}
container = (
    DockerContainer(image)
    .with_command(["sh", "-c", "mkdir -p /www && echo from-testcontainers > /www/index.html"
                               " && echo server is ready && exec httpd -f -p 8080 -h /www"])
    .with_exposed_ports(8080)
    .with_env("MODE", "test")
    .waiting_for(LogMessageWaitStrategy("server is ready").with_startup_timeout(30))
)
with container:
    host = container.get_container_host_ip()
    port = container.get_exposed_port(8080)
    seen["id"] = container.get_wrapped_container().id
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as reply:
        seen["body"] = reply.read().decode()
    seen["logs"] = container.get_logs()[0].decode()
    seen["env"] = container.exec(["sh", "-c", "echo $MODE"]).output.decode().strip()
print(json.dumps(seen))
