"""The OPA engine: a managed `opa run --server` on loopback (or an external OPA), loaded and queried through
opa-python-client. A broken bundle is rejected with file and line and the last good bundle stays loaded.
A one-shot check (the CLI) needs no server: one `opa eval` of the built bundle answers every document.

opa-python-client and requests are imported where the server path uses them: `keyguard policy check` never does."""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from keyguard.errors import PolicyError, ToolError
from keyguard.policy.bundle import PolicyBundle, activate, default_source, format_opa_errors, resolve_bundle
from keyguard.policy.documents import validate_document
from keyguard.policy.models import Finding, sort_findings
from keyguard.tools import opa_binary

log = logging.getLogger(__name__)

FINDINGS_PACKAGE = "keyguard/main"
FINDINGS_RULE = "findings"
# Each document of an input list under `with input as`: one `opa eval` answers them all, keyed by position; a
# document whose findings are undefined has no entry.
EACH_DOCUMENT_QUERY = (f"{{i: f | some i, doc in input; f := data.{FINDINGS_PACKAGE.replace('/', '.')}.{FINDINGS_RULE} "
                       "with input as doc}")
_UNDEFINED = object()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    # The OPA sidecar must not outlive its owner, even if the owner is killed.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class ManagedOpa:
    """An `opa run --server` child process bound to 127.0.0.1 on an ephemeral port."""

    def __init__(self, opa: str | None = None) -> None:
        self.opa = opa or opa_binary()
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, bundle: Path | None = None, timeout: float = 20.0) -> str:
        """Start OPA, loading the built `bundle` (keyguard.policy.bundle) in one go when given."""
        import requests

        load = ["--bundle", str(bundle)] if bundle else []
        last_error = ""
        for _ in range(3):  # the ephemeral port may be taken between probe and bind
            self.port = _free_port()
            self.process = subprocess.Popen(
                [self.opa, "run", "--server", "--addr", f"127.0.0.1:{self.port}", "--log-level", "error",
                 "--skip-version-check", *load],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - needed to tie the child to this process
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    last_error = (self.process.stderr.read() if self.process.stderr else b"").decode()[-500:]
                    break
                try:
                    if requests.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                        return self.url
                except requests.RequestException:
                    pass
                time.sleep(0.05)
            else:
                self.stop()
                raise ToolError(f"opa did not become healthy on {self.url} within {timeout:.0f}s")
            if "address already in use" not in last_error:
                break
        raise ToolError(f"opa failed to start: {last_error.strip() or 'no output'}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()


class PolicyEngine:
    """Evaluates input documents against the Rego rule set; returns Findings."""

    def __init__(self, url: str, policy_root: Path | None = None, sidecar: ManagedOpa | None = None,
                 load: bool = True) -> None:
        # A policy directory (built into a bundle on every load) or a built bundle file.
        self.policy_root = policy_root or default_source()
        self._sidecar = sidecar
        self._connect(url)
        self._lock = threading.Lock()
        self.bundle: PolicyBundle | None = None
        if load:
            self.reload()

    def _connect(self, url: str) -> None:
        from opa_client import OpaClient

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PolicyError(f"OPA URL {url!r} is not an http(s) URL like http://127.0.0.1:8181")
        self.url = url.rstrip("/")
        self._client = OpaClient(
            host=parsed.hostname, port=parsed.port or (443 if parsed.scheme == "https" else 80),
            ssl=parsed.scheme == "https", timeout=30, retries=0,
        )

    # construction -------------------------------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def managed(cls, policy_root: Path | None = None, opa: str | None = None) -> Iterator[PolicyEngine]:
        """Start a private OPA on loopback, load the policy bundle, and stop OPA when the block exits."""
        root = policy_root or default_source()
        bundle = resolve_bundle(root, opa)
        sidecar = ManagedOpa(opa)
        url = sidecar.start(bundle.path)
        engine = cls(url, policy_root=root, sidecar=sidecar, load=False)
        engine.bundle = bundle
        activate(bundle)
        try:
            yield engine
        finally:
            engine.close()

    @classmethod
    def external(cls, url: str, policy_root: Path | None = None, load: bool = False) -> PolicyEngine:
        """Use an OPA someone else runs (a sidecar on the host). By default its loaded policies are used."""
        return cls(url, policy_root=policy_root, load=load)

    def close(self) -> None:
        self._client.close_connection()
        if self._sidecar is not None:
            self._sidecar.stop()

    # loading ------------------------------------------------------------------------------------
    def reload(self) -> PolicyBundle:
        """Build and check the bundle, then replace what OPA holds; on any error keep the last good bundle."""
        new = resolve_bundle(self.policy_root, self._sidecar.opa if self._sidecar else None)
        with self._lock:
            if self._sidecar is not None:
                # A fresh sidecar loads the new bundle whole; the old one serves until the new one is healthy.
                fresh = ManagedOpa(self._sidecar.opa)
                fresh.start(new.path)
                old_sidecar, self._sidecar = self._sidecar, fresh
                self._connect(fresh.url)
                old_sidecar.stop()
            else:
                old = self.bundle
                try:
                    self._upload(new, previous=old)
                except PolicyError:
                    if old is not None:
                        self._upload(old, previous=new)
                    raise
            self.bundle = new
            activate(new)
        log.info("policy bundle loaded: %s", new.describe())
        return new

    def _upload(self, bundle: PolicyBundle, previous: PolicyBundle | None) -> None:
        import requests
        from opa_client.errors import RegoParseError

        for key, value in bundle.data.items():
            self._put_data(key, value)
        # OPA compiles each uploaded module against those already loaded, so a module that calls into one not
        # yet loaded (lib/) is refused at first; upload in passes until every module is in or no pass makes progress.
        pending = dict(bundle.modules)
        while pending:
            refused: dict[str, RegoParseError] = {}
            for module_id, source in pending.items():
                try:
                    self._client.update_policy_from_string(source, module_id, rego_compat=False)
                except RegoParseError as exc:
                    refused[module_id] = exc
                except requests.RequestException as exc:
                    raise PolicyError(f"OPA at {self.url} unreachable while loading {module_id}: {exc}") from None
            if len(refused) == len(pending):
                module_id, first = next(iter(refused.items()))
                detail = format_opa_errors({"errors": first.errors or [], "message": str(first)})
                raise PolicyError(f"policy module {module_id} rejected by OPA:\n{detail}")
            pending = {m: pending[m] for m in refused}
        if previous is not None:
            for module_id in set(previous.modules) - set(bundle.modules):
                with contextlib.suppress(Exception):
                    self._client.delete_policy(module_id)

    def _put_data(self, key: str, doc: Any) -> None:
        import requests

        try:
            response = requests.put(f"{self.url}/v1/data/{key}", json=doc, timeout=30)
        except requests.RequestException as exc:
            raise PolicyError(f"OPA at {self.url} unreachable while loading data {key}: {exc}") from None
        if response.status_code != 204:
            raise PolicyError(f"OPA rejected data document {key}: {response.text[:300]}")

    # evaluation ---------------------------------------------------------------------------------
    def evaluate(self, document: dict[str, Any], source: str = "input") -> list[Finding]:
        """Validate `document` against its kind's schema, evaluate it, and return sorted Findings."""
        import requests

        validate_document(document, source)
        try:
            response = self._client.query_rule(document, FINDINGS_PACKAGE, FINDINGS_RULE)
        except requests.HTTPError as exc:
            body = exc.response.text[:500] if exc.response is not None else ""
            raise PolicyError(f"OPA failed to evaluate {source}: {body or exc}") from None
        except requests.RequestException as exc:
            raise PolicyError(f"OPA at {self.url} unreachable while evaluating {source}: {exc}") from None
        # opa-python-client returns {} for an undefined rule.
        return _findings(response.get("result", _UNDEFINED), source)


def _findings(results: Any, source: str) -> list[Finding]:
    """The rule set's answer for one document as sorted Findings; undefined is never compliant."""
    if results is _UNDEFINED:
        raise PolicyError(
            f"policy result for {source} is undefined (data.keyguard.main.findings): the rule set is "
            "incomplete or not loaded; refusing to treat that as a pass"
        )
    if not isinstance(results, list):
        raise PolicyError(f"policy result for {source} is not a list of findings: {type(results).__name__}")
    findings = []
    for item in results:
        try:
            findings.append(Finding.model_validate(item))
        except ValueError as exc:
            raise PolicyError(f"a rule returned a malformed result {item!r}: {exc}") from None
    return sort_findings(findings)


@contextlib.contextmanager
def _opa_eval(documents: list[tuple[str, dict[str, Any]]], bundle: PolicyBundle,
              opa: str | None = None) -> Iterator[Callable[[], list[list[Finding]]]]:
    """Start one `opa eval` of the built bundle over every document (no server, no HTTP) and yield the function that
    waits for each document's findings: the block can work while OPA compiles. Leaving it early stops OPA."""
    names = ", ".join(name for name, _ in documents)
    with tempfile.TemporaryDirectory(prefix="keyguard-eval-") as scratch:
        inputs = Path(scratch) / "input.json"
        inputs.write_text(json.dumps([doc for _, doc in documents]), encoding="utf-8")
        proc = subprocess.Popen(
            [opa or opa_binary(), "eval", "--bundle", str(bundle.path), "--input", str(inputs), "--format", "json",
             EACH_DOCUMENT_QUERY],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

        def findings() -> list[list[Finding]]:
            try:
                stdout, stderr = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                raise PolicyError(f"`opa eval` of {names} did not finish within 120 s") from None
            if proc.returncode != 0:
                if len(documents) > 1:  # evaluate them one by one, so the error names the document that fails
                    for one in documents:
                        with _opa_eval([one], bundle, opa) as alone:
                            alone()
                raise PolicyError(f"OPA failed to evaluate {names} with {bundle.describe()}:\n"
                                  + format_opa_errors(stdout or stderr))
            try:
                by_position = json.loads(stdout)["result"][0]["expressions"][0]["value"]
            except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                raise PolicyError(f"`opa eval` gave no answer for {names}: {(stdout + stderr)[:500]}") from None
            return [_findings(by_position.get(str(i), _UNDEFINED), name) for i, (name, _) in enumerate(documents)]

        try:
            yield findings
        finally:
            if proc.returncode is None:  # left before the answer was read
                proc.kill()
                proc.communicate()


def evaluate_each(documents: list[tuple[str, dict[str, Any]]], opa_url: str | None = None,
                  policy_root: Path | None = None) -> list[tuple[str, list[Finding]]]:
    """One-shot evaluation for the CLI, each document's findings apart (a report can say which file a finding came
    from): an external OPA when given, else one `opa eval` of the (checked) bundle."""
    if opa_url:
        engine = PolicyEngine.external(opa_url, policy_root=policy_root)
        return [(name, engine.evaluate(doc, source=name)) for name, doc in documents]
    bundle = resolve_bundle(policy_root)
    activate(bundle)
    with _opa_eval(documents, bundle) as answer:  # OPA compiles the bundle while the documents are validated
        for name, doc in documents:
            validate_document(doc, name)
        found = answer()
    return list(zip([name for name, _ in documents], found, strict=True))


def evaluate_documents(documents: list[tuple[str, dict[str, Any]]], opa_url: str | None = None,
                       policy_root: Path | None = None) -> list[Finding]:
    return sort_findings([f for _, found in evaluate_each(documents, opa_url, policy_root) for f in found])
