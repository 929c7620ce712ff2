"""Why a run's pods do not start: waiting reasons, pod summaries and a hint."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


PULL_GRACE = 60.0  # seconds an image pull may keep failing before the run stops
FATAL_REASONS = frozenset({
    "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError",
    "CreateContainerError", "RunContainerError", "CrashLoopBackOff",
})  # fmt: skip
PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})

# ----------------------------------------------------------------- diagnosis


class _Stuck:
    """Tells pods that will never start from pods that are merely slow."""

    def __init__(self) -> None:
        self.pulling_since: float | None = None

    def check(self, pods: Sequence[Mapping[str, Any]]) -> str | None:
        reasons = {r for p in pods for r in _waiting_reasons(p)}
        fatal = reasons & FATAL_REASONS
        if fatal:
            return f"cannot start ({', '.join(sorted(fatal))})"
        if not reasons & PULL_REASONS:
            self.pulling_since = None
            return None
        self.pulling_since = self.pulling_since or time.monotonic()
        if time.monotonic() - self.pulling_since > PULL_GRACE:
            return f"cannot pull the image for {PULL_GRACE:.0f}s"
        return None


def _waiting_reasons(pod: Mapping[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    reasons = []
    for c in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            reasons.append(str(waiting["reason"]))
        terminated = (c.get("state") or {}).get("terminated") or {}
        if terminated and terminated.get("exitCode") not in (None, 0):
            reasons.append("CrashLoopBackOff" if pod.get("spec", {}).get("restartPolicy") == "Always" else "Terminated")
    return reasons


def _pod_summary(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    parts = [str(status.get("phase") or "Unknown")]
    for cond in status.get("conditions") or []:
        if cond.get("status") == "False" and cond.get("reason"):
            parts.append(f"{cond['type']}={cond['reason']}: {_one_line(cond.get('message'))}")
    for c in status.get("containerStatuses") or []:
        state = c.get("state") or {}
        for key in ("waiting", "terminated"):
            if state.get(key):
                s = state[key]
                code = f" exit {s['exitCode']}" if "exitCode" in s else ""
                parts.append(f"container {c.get('name')} {key} {s.get('reason', '')}{code}: {_one_line(s.get('message'))}")
    return "; ".join(parts)


def _one_line(text: Any, limit: int = 300) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _hint(pods: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]]) -> str | None:
    text = " ".join(
        [_pod_summary(p) for p in pods] + [f"{e.get('reason')} {e.get('message')}" for e in events]
    )
    if any(k in text for k in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "Failed to pull")):
        return ("the nodes cannot pull the image: push it (`xrun build SPEC --push`), check image.registry, "
                "and give the cluster pull access (imagePullSecrets, or node IAM on GKE/EKS)")
    if "Unschedulable" in text or "FailedScheduling" in text:
        return ("no node can take the pod: lower cluster.threads_per_worker / memory_limit, check "
                "cluster.kubernetes.node_selector and tolerations, or add nodes")
    if "forbidden" in text.lower() or "FailedCreate" in text:
        return ("the pods were refused (Pod Security admission, ResourceQuota or LimitRange of the namespace); "
                "see the events above")
    if "CreateContainerConfigError" in text:
        return "a Secret or ConfigMap the pod needs is missing or lacks a key"
    if "CrashLoopBackOff" in text or "Terminated" in text:
        return "the container exits: check `kubectl logs` of the pod; the image may lack the environment's python"
    return None  # fmt: skip
