"""Harness for the vRA shim tests: unpacks the provider package, loads each action's handler the
way ABX does, fakes the ABX context, and talks to the gateway under test.

Driven by tests/api/vra_python.rs (plain `cargo test` runs it), which starts a TLS gateway in
process, builds the package with the library and sets:

  IPAMGW_VRA_HOST       host:port of the gateway (self-signed certificate)
  IPAMGW_VRA_USER       a gateway client name
  IPAMGW_VRA_PASSWORD   its password
  IPAMGW_VRA_PACKAGE    path of the provider zip
  IPAMGW_VRA_CERT       path of the gateway's certificate (PEM), to compare with what the shim saw
  IPAMGW_VRA_FIXTURES   directory of the vRA-shaped inputs (fixtures/vra)
  IPAMGW_VRA_LAB        the standard lab topology every backend presents (JSON, from
                        tests/api/support/matrix.rs): networks with name, cidr, address_space,
                        gateway, dns_servers, dns_domain, dns_search_domains, vlan; the block;
                        tiny_free. The suite runs once per backend kind and asserts what the
                        contract promises from these facts; it never asks which backend it is on.

Standard library only.
"""

import base64
import contextlib
import importlib.util
import io
import json
import os
import ssl
import sys
import tempfile
import urllib.parse
import urllib.request
import uuid
import zipfile

ENV_KEYS = (
    "IPAMGW_VRA_HOST",
    "IPAMGW_VRA_USER",
    "IPAMGW_VRA_PASSWORD",
    "IPAMGW_VRA_PACKAGE",
    "IPAMGW_VRA_CERT",
    "IPAMGW_VRA_FIXTURES",
    "IPAMGW_VRA_LAB",
)

CREDENTIALS_LINK = "/core/auth/credentials/13c9cbade08950755898c4b89c4a0"


def missing_env():
    return [k for k in ENV_KEYS if not os.environ.get(k)]


def env(key):
    return os.environ[key]


class FakeContext(object):
    """The ABX context: request() answers vRA's credential store, and records every call."""

    def __init__(self, username=None, password=None, status=200, as_bytes=False):
        self.username = env("IPAMGW_VRA_USER") if username is None else username
        self.password = env("IPAMGW_VRA_PASSWORD") if password is None else password
        self.status = status
        self.as_bytes = as_bytes
        self.calls = []

    def request(self, link, operation, body):
        self.calls.append((link, operation, body))
        content = json.dumps({"privateKeyId": self.username, "privateKey": self.password})
        if self.as_bytes:
            content = content.encode("utf-8")
        return {"status": self.status, "content": content}


class Package(object):
    """The provider zip, unpacked: top-level files, bundle entries, one directory per action."""

    def __init__(self, path):
        self.path = path
        self.tmp = tempfile.TemporaryDirectory(prefix="vra-package-")
        self.root = self.tmp.name
        with zipfile.ZipFile(path) as top:
            self.top_names = top.namelist()
            top.extractall(self.root)
        with zipfile.ZipFile(os.path.join(self.root, "bundle.zip")) as bundle:
            self.bundle_names = bundle.namelist()
            self.bundle = {name: bundle.read(name) for name in self.bundle_names}
        self.actions = {}
        for name in self.bundle_names:
            if name.endswith(".zip"):
                stem = name[: -len(".zip")]
                target = os.path.join(self.root, "actions", stem)
                with zipfile.ZipFile(io.BytesIO(self.bundle[name])) as code:
                    code.extractall(target)
                self.actions[stem] = target

    def read(self, name):
        with open(os.path.join(self.root, name), "rb") as f:
            return f.read()

    def handler(self, stem):
        """The action's handler(context, inputs), imported from its own directory as ABX would."""
        directory = self.actions[stem]
        for module in ("source", "ipamgw_vra"):
            sys.modules.pop(module, None)
        sys.path.insert(0, directory)
        try:
            spec = importlib.util.spec_from_file_location(
                "source", os.path.join(directory, "source.py")
            )
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(directory)
        return module.handler

    def helper(self, stem="validate_endpoint"):
        """The shared shim module of one action (for unit-level checks)."""
        directory = self.actions[stem]
        spec = importlib.util.spec_from_file_location(
            "ipamgw_vra_" + stem, os.path.join(directory, "ipamgw_vra.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def close(self):
        self.tmp.cleanup()


def run_action(package, stem, inputs, context=None):
    """Runs one action; returns (result, captured stdout). Exceptions propagate (with the log
    attached as `action_log`)."""
    context = context or FakeContext()
    handler = package.handler(stem)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            result = handler(context, inputs)
    except Exception as e:
        e.action_log = out.getvalue()
        raise
    return result, out.getvalue()


def lab():
    """The standard lab topology (IPAMGW_VRA_LAB)."""
    return json.loads(env("IPAMGW_VRA_LAB"))


def lab_network(name):
    for n in lab()["networks"]:
        if n["name"] == name:
            return n
    raise KeyError("no lab network %s in IPAMGW_VRA_LAB" % name)


def gateway_certificate():
    with open(env("IPAMGW_VRA_CERT")) as f:
        return f.read()


def fill(value, values):
    if isinstance(value, str):
        out = value
        while "{{" in out:
            start = out.index("{{")
            end = out.index("}}", start)
            key = out[start + 2: end]
            if key not in values:
                raise KeyError("no value for placeholder {{%s}}" % key)
            out = out[:start] + values[key] + out[end + 2:]
        return out
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, values) for k, v in value.items()}
    return value


def fixture(name, values, certificate=None):
    """fixtures/vra/<name>.json with placeholders filled; `certificate` goes into
    endpointProperties the way vRA adds it once the user accepted one."""
    with open(os.path.join(env("IPAMGW_VRA_FIXTURES"), name + ".json")) as f:
        inputs = fill(json.load(f), values)
    if certificate:
        endpoint = inputs.get("endpoint", inputs)
        endpoint["endpointProperties"]["certificate"] = certificate
    return inputs


def new_resource():
    return "/resources/compute/" + uuid.uuid4().hex


def native(path, method="GET", body=None):
    """The gateway's native API (to check what the shims did), trusting its certificate."""
    ctx = ssl.create_default_context(cafile=env("IPAMGW_VRA_CERT"))
    token = base64.b64encode(
        ("%s:%s" % (env("IPAMGW_VRA_USER"), env("IPAMGW_VRA_PASSWORD"))).encode("utf-8")
    ).decode("ascii")
    data = json.dumps(body).encode("utf-8") if body is not None else None
    request = urllib.request.Request(
        "https://%s%s" % (env("IPAMGW_VRA_HOST"), path),
        data=data,
        method=method,
        headers={"Authorization": "Basic " + token, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=ctx, timeout=30) as response:
        raw = response.read()
    return json.loads(raw.decode("utf-8")) if raw else None


def held_by(owner):
    found = native("/api/v1/allocations?owner=" + urllib.parse.quote(owner, safe=""))
    return [a["address"] for a in found["allocations"]]


def allocation_at(address):
    found = native("/api/v1/allocations?address=" + urllib.parse.quote(address, safe=""))
    return found["allocations"][0] if found["allocations"] else None


def placeholder_values(resource=None):
    values = {"host": env("IPAMGW_VRA_HOST"), "resource": resource or new_resource()}
    for n in native("/api/v1/networks")["networks"]:
        values["range:" + n["name"]] = n["id"]
    for b in native("/api/v1/blocks")["blocks"]:
        values["block:" + b["name"]] = b["id"]
    return values
