"""A stand-in for the few Kubernetes REST endpoints xrun calls — NOT an API server.

No kube-apiserver can be had on this machine (DESIGN §5), so backend tests talk
through the real kr8s client, over real HTTP, to this fake. It stores objects
as JSON, assigns uids, filters lists by equality label selectors and simple
field selectors, answers with Kubernetes ``Status`` errors (403, 404, 409),
garbage-collects dependents by ``ownerReferences`` on delete, and lets a test
script what the "kubelet" reports for the pods of a Deployment or Job. It does
not validate objects, run controllers, schedule, or port-forward: what these
tests prove is xrun's side of the conversation, not the cluster's.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?/?$"
)
KIND_OF = {
    "configmaps": "ConfigMap", "secrets": "Secret", "services": "Service", "pods": "Pod",
    "events": "Event", "deployments": "Deployment", "replicasets": "ReplicaSet", "jobs": "Job",
    "daskclusters": "DaskCluster",
}  # fmt: skip

# What a test wants the pods of a Deployment/Job to look like: status and events.
PodScript = Callable[[dict[str, Any]], tuple[dict[str, Any], list[dict[str, Any]]]]


def ready_pod(_: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
              "containerStatuses": [{"name": "c", "ready": True, "state": {"running": {}}}]}  # fmt: skip
    return status, []


class FakeApiServer:
    def __init__(self, namespaces: tuple[str, ...] = ("default", "ml")) -> None:
        self.namespaces = set(namespaces)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.forbidden: set[tuple[str, str]] = set()  # (verb, plural) answered with 403
        self.pod_script: PodScript = ready_pod
        self.crds = {"daskclusters": False}
        self.lock = threading.RLock()
        self.kubeconfig_path = ""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    # ----------------------------------------------------------------- control

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: fake, cluster: {{server: '{self.url}'}}}}]\n"
            "users: [{name: me, user: {token: fake-token}}]\n"
            f"contexts: [{{name: fake, context: {{cluster: fake, user: me, namespace: {namespace}}}}}]\n"
            "current-context: fake\n"
        )
        self.kubeconfig_path = str(path)
        return path

    def kinds(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(o) for (p, ns, _), o in sorted(self.objects.items())
                    if p == plural and (namespace is None or ns == namespace)]  # fmt: skip

    def names(self) -> list[str]:
        with self.lock:
            return sorted(f"{KIND_OF[p]}/{n}" for p, _, n in self.objects if p not in ("events",))

    def put(self, plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as if created (also used to seed leftovers)."""
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", namespace)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            meta["resourceVersion"] = str(len(self.requests))
            self.objects[(plural, namespace, meta["name"])] = obj
            return obj

    # ---------------------------------------------------------------- behaviour

    def _spawn_pods(self, owner: dict[str, Any], count: int) -> None:
        template = owner["spec"]["template"]
        ns = owner["metadata"]["namespace"]
        for i in range(count):
            name = f"{owner['metadata']['name']}-{uuid.uuid4().hex[:5]}"
            pod = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "labels": dict(template["metadata"]["labels"]),
                             "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                                  "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]},
                "spec": copy.deepcopy(template["spec"]),
            }  # fmt: skip
            status, events = self.pod_script(pod)
            pod["status"] = status
            self.put("pods", ns, pod)
            for j, event in enumerate(events):
                self.put("events", ns, {
                    "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.{i}{j}"},
                    "type": event.get("type", "Warning"), "reason": event["reason"], "message": event["message"],
                    "involvedObject": {"kind": "Pod", "name": name, "namespace": ns},
                })  # fmt: skip

    def _create(self, plural: str, ns: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if ns not in self.namespaces:
            return 404, _status(404, "NotFound", f'namespaces "{ns}" not found')
        if plural == "daskclusters" and not self.crds["daskclusters"]:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        name = body["metadata"]["name"]
        if (plural, ns, name) in self.objects:
            return 409, _status(409, "AlreadyExists", f'{plural} "{name}" already exists')
        obj = self.put(plural, ns, body)
        if plural == "deployments":
            self._spawn_pods(obj, int(obj["spec"].get("replicas", 1)))
        elif plural == "jobs":
            self._spawn_pods(obj, int(obj["spec"].get("parallelism", 1)))
        return 201, obj

    def _delete(self, plural: str, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        obj = self.objects.pop((plural, ns, name), None)
        if obj is None:
            return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
        self._collect(obj["metadata"]["uid"])
        return 200, _status(200, "Success", "deleted")

    def _collect(self, uid: str) -> None:
        """The garbage collector: dependents of a deleted owner go too."""
        for key, obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs) and key in self.objects:
                del self.objects[key]
                self._collect(obj["metadata"]["uid"])

    def _list(self, plural: str, ns: str, query: dict[str, list[str]]) -> dict[str, Any]:
        labels = _selector(query.get("labelSelector", [""])[0])
        fields = _selector(query.get("fieldSelector", [""])[0])
        items = [o for o in self.kinds(plural, ns)
                 if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
                 and all(_field(o, k) == v for k, v in fields.items())]  # fmt: skip
        return {"apiVersion": "v1", "kind": f"{KIND_OF.get(plural, 'Object')}List", "metadata": {}, "items": items}

    def handle(self, method: str, raw_path: str, body: Any) -> tuple[int, dict[str, Any]]:
        url = urlparse(raw_path)
        with self.lock:
            self.requests.append((method, url.path, body))
            if url.path.rstrip("/") == "/version":
                return 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake"}
            m = _PATH.match(url.path)
            if not m:
                return 404, _status(404, "NotFound", f"no route {url.path}")
            plural, ns, name = m["plural"], m["ns"], m["name"]
            verb = {"POST": "create", "DELETE": "delete", "GET": "get" if name else "list"}.get(method, method)
            if (verb, plural) in self.forbidden:
                return 403, _status(403, "Forbidden", f'{plural} is forbidden: User "me" cannot {verb} '
                                    f'resource "{plural}" in API group "{m["group"] or ""}" in the namespace "{ns}"')  # fmt: skip
            if method == "POST":
                return self._create(plural, ns, body)
            if method == "DELETE":
                return self._delete(plural, ns, name)
            if method == "GET" and name:
                obj = self.objects.get((plural, ns, name))
                return (200, copy.deepcopy(obj)) if obj else (404, _status(404, "NotFound", f'"{name}" not found'))
            if method == "GET":
                return 200, self._list(plural, ns, parse_qs(url.query))
            return 405, _status(405, "MethodNotAllowed", method)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _respond(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                code, payload = server.handle(self.command, self.path, body)
                out = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _respond

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure" if code >= 400 else "Success",
            "message": message, "reason": reason, "code": code}  # fmt: skip


def _selector(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key] = value.lstrip("=")
    return out


def _field(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
