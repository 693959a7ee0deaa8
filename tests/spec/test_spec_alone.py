"""``agentrt.spec`` works with only what it needs installed: pydantic, PyYAML, RE2, jsonschema.

A tool that only reads or checks resource files (an editor plugin, a CI lint,
a Kubernetes operator's admission check) must not pull in the engine's HTTP
stack, the store or the MCP SDK. Each test runs a fresh interpreter whose
imports of every other third-party package fail, as if it were not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What spec truly needs: pydantic (and its own dependencies), PyYAML, RE2 (the
# regex fields), and jsonschema (and its dependencies) for a Tool's input_schema.
NEEDED = [
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_extensions",
    "typing_inspection",
    "yaml",
    "re2",
    "jsonschema",
    "jsonschema_specifications",
    "referencing",
    "rpds",
    "attrs",
    "attr",
]

# Every example's resource files (rules.yaml there is a model server's script).
EXAMPLES = [
    "examples/hello",
    "examples/local_server/agent.yaml",
    "examples/memory",
    "examples/sandbox",
    "examples/support_desk",
    "examples/teams",
]

BLOCKER = """
import importlib.machinery
import site
import sys

AT_START = frozenset(sys.modules)  # site's own start-up hooks (.pth files), not ours
NEEDED = frozenset(sys.argv[1].split(","))
SITE = (*site.getsitepackages(), site.getusersitepackages())


def installed(spec):
    # A module found in site-packages is a third-party one (the standard
    # library lives elsewhere; agentrt itself is allowed by name).
    places = [spec.origin or "", *(spec.submodule_search_locations or ())]
    return any(place.startswith(SITE) for place in places)


class NotInstalled:
    # A meta-path finder asked before every other: a third-party module that
    # spec does not need is refused, as if it were not installed.
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in NEEDED or top == "agentrt":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and installed(spec):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())


def third_party():
    return sorted({
        name.partition(".")[0]
        for name, module in list(sys.modules.items())
        if str(getattr(module, "__file__", None) or "").startswith(SITE)
        and not name.startswith("agentrt")
        and name not in AT_START
    })
"""


def _run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER + code, ",".join(NEEDED), ",".join(EXAMPLES)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_blocker_refuses_what_spec_does_not_need() -> None:
    # Without this, a broken blocker would make the test below pass vacuously.
    result = _run(
        """
import json
refused = []
for name in ("aiohttp", "orjson", "platformdirs", "mcp", "agentrt.engine", "agentrt.state"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        refused.append(name)
print(json.dumps({"refused": refused}))
"""
    )
    assert result["refused"] == [
        "aiohttp",
        "orjson",
        "platformdirs",
        "mcp",
        "agentrt.engine",
        "agentrt.state",
    ]


def test_spec_imports_and_loads_every_example_with_only_what_it_needs() -> None:
    result = _run(
        """
import json
import sys

import agentrt.spec
from agentrt.spec import check_references, load_paths, load_text

QUERY = '''
apiVersion: agentrt.dev/v1
kind: Query
metadata: {name: hi}
spec: {target: greeter, input: Say hi to Ada}
---
apiVersion: agentrt.dev/v1
kind: Tool
metadata: {name: adder}
spec:
  kind: python
  callable: tests.sample_tools:add
  input_schema: {type: object, properties: {a: {type: integer}}, required: [a]}
'''
loaded = load_paths(sys.argv[2].split(",")) + load_text(QUERY)
check_references(loaded)
print(json.dumps({
    "kinds": sorted({item.resource.kind for item in loaded}),
    "agentrt": sorted(m for m in sys.modules if m.startswith("agentrt")),
    "third_party": third_party(),
}))
"""
    )
    assert result["kinds"] == ["Agent", "Model", "Query", "Team", "Tool"]  # every kind
    # Only spec and the base layer were imported; the engine, store and tools were not.
    loaded = result["agentrt"]
    assert isinstance(loaded, list)
    assert {m.split(".")[1] for m in loaded if "." in m} <= {
        "spec",
        "errors",
        "_imports",
        "_text",
        "_version",
    }
    third_party = result["third_party"]
    assert isinstance(third_party, list)
    # jsonschema checked the adder's input_schema.
    assert {"pydantic", "yaml", "re2", "jsonschema"} <= set(third_party) <= set(NEEDED)


def test_importing_agentrt_loads_no_engine_until_a_name_is_used() -> None:
    result = _run(
        """
import json
import sys

import agentrt

before = "agentrt.engine" in sys.modules
version = agentrt.__version__
error = agentrt.SpecError.__name__
print(json.dumps({"engine_before": before, "version": version, "error": error}))
"""
    )
    assert result == {"engine_before": False, "version": "0.1.0", "error": "SpecError"}
