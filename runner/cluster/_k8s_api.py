"""The few Kubernetes API calls xrun makes, through kr8s, with errors that say what to do.

Every call goes through :class:`ClusterApi`, which turns kr8s/httpx failures
into :class:`~runner.errors.InfraError` (exit 3) naming the server, the
namespace and the fix: no kubeconfig, an unreachable API server, expired
credentials (401), missing RBAC permissions (403), a missing namespace.
kr8s is imported lazily: it is an optional dependency (``xrun[kubernetes]``).
"""

from __future__ import annotations

import builtins
import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from runner.errors import InfraError

log = logging.getLogger(__name__)

T = TypeVar("T")

RBAC_HINT = "grant the namespaced Role in docs/kubernetes.md (section \"Permissions\") to your user or service account"

# kind → (apiVersion, plural): what xrun creates, deletes and reads.
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("v1", "configmaps"),
    "Secret": ("v1", "secrets"),
    "Service": ("v1", "services"),
    "Pod": ("v1", "pods"),
    "Event": ("v1", "events"),
    "Deployment": ("apps/v1", "deployments"),
    "ReplicaSet": ("apps/v1", "replicasets"),
    "Job": ("batch/v1", "jobs"),
    "DaskCluster": ("kubernetes.dask.org/v1", "daskclusters"),
}


def _kr8s() -> Any:
    try:
        import kr8s  # deferred: the Kubernetes client, only for that backend
        import kr8s.objects
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InfraError(
            "the kubernetes backend needs kr8s: pip install 'xrun[kubernetes]'"
        ) from exc
    return kr8s


def _cls(kind: str) -> Any:
    """kr8s's synchronous class for ``kind`` (made for custom resources)."""
    import kr8s.objects  # deferred: the Kubernetes client, only for that backend

    builtin = getattr(kr8s.objects, kind, None)
    if builtin is not None and kind != "DaskCluster":
        return builtin
    version, plural = KINDS[kind]
    return kr8s.objects.new_class(kind, version, namespaced=True, plural=plural, asyncio=False)


class ClusterApi:
    """A connection to one namespace of one cluster (kubeconfig context)."""

    def __init__(self, *, namespace: str | None, context: str | None = None, kubeconfig: str | None = None) -> None:
        """``namespace`` None: the namespace of the kubeconfig context (or "default")."""
        kr8s = _kr8s()
        self.namespace = namespace or "default"
        self.context = context
        where = f"context {context!r}" if context else "the current kubeconfig context"
        try:
            self._api = kr8s.api(context=context, kubeconfig=kubeconfig, namespace=namespace)
        except ValueError as exc:
            text = str(exc)
            if "credentials" in text:
                raise InfraError(
                    "no Kubernetes cluster is configured: no kubeconfig was found (KUBECONFIG or "
                    "~/.kube/config) and xrun is not running inside a cluster; get credentials "
                    "(e.g. `gcloud container clusters get-credentials`, `aws eks update-kubeconfig`) "
                    "and check with `kubectl cluster-info`"
                ) from None
            raise InfraError(f"kubeconfig problem with {where}: {text}; see `kubectl config get-contexts`") from None
        except Exception as exc:
            raise _infra(exc, f"connecting with {where}", self.namespace, self._server_hint(context)) from None
        self.namespace = namespace or str(getattr(self._api, "namespace", None) or "default")
        auth = getattr(self._api, "auth", None)
        self.server = str(getattr(auth, "server", "") or self._server_hint(context))

    @staticmethod
    def _server_hint(context: str | None) -> str:
        return f"the API server of {'context ' + repr(context) if context else 'the current context'}"

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call; failures become an InfraError about ``what``."""
        try:
            return fn()
        except InfraError:
            raise
        except Exception as exc:
            raise _infra(exc, what, self.namespace, self.server) from None

    # ---------------------------------------------------------------- objects

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create one object; returns it as the server stored it (with its uid)."""
        obj = _cls(manifest["kind"])(dict(manifest), namespace=self.namespace, api=self._api)
        self.call(f"creating {manifest['kind']} {manifest['metadata']['name']}", obj.create)
        return dict(obj.raw)

    def delete(self, kind: str, name: str, *, namespace: str | None = None) -> bool:
        """Delete one object and its dependents (background); False if it was gone."""
        from kr8s import NotFoundError  # deferred: the Kubernetes client, only for that backend

        obj = _cls(kind)(name, namespace=namespace or self.namespace, api=self._api)
        try:
            obj.delete(propagation_policy="Background")
        except NotFoundError:
            return False
        except Exception as exc:
            raise _infra(exc, f"deleting {kind} {name}", self.namespace, self.server) from None
        return True

    def list(self, kind: str, labels: Mapping[str, str] | None = None, *,
             fields: Mapping[str, str] | None = None, namespace: str | None = None) -> builtins.list[dict[str, Any]]:  # fmt: skip
        def get() -> builtins.list[dict[str, Any]]:
            found = self._api.get(
                _cls(kind), namespace=namespace or self.namespace,
                label_selector=dict(labels) if labels else None,
                field_selector=dict(fields) if fields else None,
            )  # fmt: skip
            return [dict(o.raw) for o in found]

        return self.call(f"listing {KINDS[kind][1]}", get)

    def warning_events(self, name_prefix: str) -> builtins.list[dict[str, Any]]:
        """Warning events about objects whose name starts with ``name_prefix``.

        Events are a courtesy in error messages: failures to read them are logged.
        """
        try:
            events = self.list("Event", fields={"type": "Warning"})
        except InfraError as exc:
            log.debug("cannot read events: %s", exc)
            return []
        return sorted(
            (e for e in events if str((e.get("involvedObject") or {}).get("name", "")).startswith(name_prefix)),
            key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""),
        )  # fmt: skip

    # ------------------------------------------------------------ port-forward

    @contextmanager
    def port_forward(self, service: str, port: int, timeout: float = 30) -> Iterator[int]:
        """Forward a free local port to ``port`` of the Service's ready pod."""
        # deferred: the Kubernetes client, only for that backend
        from kr8s.portforward import PortForward

        svc = _cls("Service")(service, namespace=self.namespace, api=self._api)
        self.call(f"reading Service {service}", svc.refresh)  # PortForward needs its selector
        local = _free_port()
        forward = PortForward(svc, port, local_port=local)
        forward.start()
        try:
            _wait_serving(forward, local, timeout)
            yield local
        finally:
            try:
                forward.stop()
            except Exception as exc:  # stopping a dead forward is not an error
                log.debug("port-forward stop: %s", exc)


def pod_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_serving(forward: Any, port: int, timeout: float) -> None:
    """Until the forward's local server listens (without opening a connection through it)."""
    deadline = time.monotonic() + timeout
    while not (forward.servers and all(s is not None and s.is_serving() for s in forward.servers)):
        if time.monotonic() > deadline:
            raise InfraError(f"the port-forward to the scheduler did not open local port {port}")
        time.sleep(0.05)


# --------------------------------------------------------------------- errors


def _status(exc: BaseException) -> tuple[int | None, str]:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    status = getattr(exc, "status", None)
    message = ""
    if isinstance(status, Mapping):
        message = str(status.get("message") or "")
    elif status:
        message = str(status)
    if not message and response is not None:
        try:
            message = str(response.json().get("message") or "")
        except Exception:
            message = ""
    return code, message or str(exc)


def _infra(exc: BaseException, what: str, namespace: str, server: str) -> InfraError:
    """An InfraError for a failed API call, with the fix for the common causes."""
    import httpx  # deferred: the Kubernetes client's transport, only for that backend

    code, message = _status(exc)
    if code == 401:
        text = (f"the Kubernetes API server ({server}) rejected xrun's credentials (401) while "
                f"{what}; refresh your kubeconfig credentials and check `kubectl auth whoami`")
    elif code == 403:
        text = (f"the Kubernetes API refused {what} in namespace {namespace!r} (403 Forbidden): "
                f"{message}; {RBAC_HINT}")
    elif code == 404 and "namespace" in message.lower():
        text = (f"namespace {namespace!r} does not exist ({what}): create it "
                "(`kubectl create namespace …`) or set cluster.kubernetes.namespace")
    elif code == 404 and "DaskCluster" in what:
        text = ("the DaskCluster resource type is not installed, so operator mode cannot run: install the "
                "Dask operator (see docs/kubernetes.md) or set cluster.kubernetes.operator: false")
    elif code == 409:
        text = f"{what} failed: it already exists ({message}); remove leftovers with `xrun clean`"
    elif code is not None:
        text = f"the Kubernetes API answered {code} while {what} in namespace {namespace!r}: {message}"
    elif isinstance(exc, (httpx.TransportError, OSError)) or type(exc).__name__ == "APITimeoutError":
        text = (f"cannot reach the Kubernetes API server ({server}) while {what}: "
                f"{type(exc).__name__}: {exc}; check the network (VPN, firewall) and `kubectl cluster-info`")
    else:
        text = f"Kubernetes API call failed while {what}: {type(exc).__name__}: {exc}"
    return InfraError(text)  # fmt: skip
