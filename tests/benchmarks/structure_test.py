"""The benchmarks as one package: imports at the top (optional packages excepted), no import cycle,
no flags defined on import, the same flag names across tools (defined once, in common_flags),
every entry point in benchmarks/README.md, and user errors as one `error: ...` line."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

import tests.import_graph_test as import_graph_test
from tests.helpers import REPO

BENCHMARKS = os.path.join(REPO, "benchmarks")
# Packages some tools need and others do not (benchmarks/optional.py): imported where they are used.
OPTIONAL = {"torch", "anomalib", "onnxruntime", "onnx", "onnxscript", "jax2onnx"}
# Function-level imports of our own code, each with its reason in a comment where it stands.
DELIBERATELY_LATE = {("speed/memory_probe.py", "benchmarks.speed")}  # a peer's probe holds none of our library


def _sources():
    for folder, _, names in os.walk(BENCHMARKS):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, BENCHMARKS), ast.parse(open(path).read(), path)


def _imported(node) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and not node.level:
        return [node.module]
    return []


def test_imports_are_at_the_top_except_optional_packages():
    late, optional_at_top, optional_late = [], [], 0
    for path, tree in _sources():
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
        for node in ast.walk(tree):
            for module in _imported(node):
                root = module.split(".")[0]
                if id(node) in nested:
                    optional_late += root in OPTIONAL
                    if root not in OPTIONAL and (path, module) not in DELIBERATELY_LATE:
                        late.append(f"{path}:{node.lineno} {module}")
                elif root in OPTIONAL:
                    optional_at_top.append(f"{path}:{node.lineno} {module}")
    assert optional_late > 5  # the walk saw the peers' and the export's imports
    assert not late, f"imports inside functions (move them to the top): {late}"
    assert not optional_at_top, f"optional packages imported at the top (import them where used): {optional_at_top}"


def test_the_benchmarks_have_no_import_cycle(monkeypatch):
    monkeypatch.setattr(import_graph_test, "ROOT", BENCHMARKS)
    graph = import_graph_test.import_graph()
    assert len(graph) > 30 and "benchmarks.leaderboard.jobs" in graph["benchmarks.leaderboard.__main__"]
    cycle = import_graph_test.find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# In a fresh process: import every module (no flag of ours may appear), then define each entry
# point's flags alone, note who defined each, and remove them before the next tool.
_FLAGS_SCRIPT = """
import importlib, json, pkgutil
from absl import flags
import benchmarks
modules = [importlib.import_module(m.name) for m in pkgutil.walk_packages(benchmarks.__path__, 'benchmarks.')]
on_import = sorted(m for m in flags.FLAGS.flags_by_module_dict() if m.startswith('benchmarks'))
tools = {}
for module in modules:
    if not (hasattr(module, 'define_flags') and hasattr(module, 'main')):
        continue
    before = set(flags.FLAGS)
    module.define_flags()
    new = sorted(set(flags.FLAGS) - before)
    owners = {name: by for by, defined in flags.FLAGS.flags_by_module_dict().items()
              for f in defined for name in (f.name,) if name in new}
    tools[module.__name__.removesuffix('.__main__')] = {
        name: {'type': flags.FLAGS[name].flag_type(), 'by': owners[name]} for name in new}
    for name in new:
        delattr(flags.FLAGS, name)
print(json.dumps({'on_import': on_import, 'tools': tools}))
"""


@pytest.fixture(scope="module")
def tool_flags():
    done = subprocess.run([sys.executable, "-c", _FLAGS_SCRIPT], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_benchmarks_defines_no_flags(tool_flags):
    """Only a tool run as a program defines its flags, so tools that share flag names can be
    imported into one process (tests, the leaderboard's complexity jobs)."""
    assert tool_flags["on_import"] == []
    assert "benchmarks.leaderboard" in tool_flags["tools"]  # defining them does show (the check can fail)


def test_the_same_flag_names_mean_the_same_thing_in_every_tool(tool_flags):
    tools = tool_flags["tools"]
    assert {"benchmarks.leaderboard", "benchmarks.sanity", "benchmarks.speed", "benchmarks.export",
            "benchmarks.speed.complexity", "benchmarks.speed.memory_probe", "benchmarks.speed.aupro_timing",
            "benchmarks.speed.device_check", "benchmarks.metrics", "benchmarks.speed.job_timing",
            "benchmarks.speed.input_pipeline", "benchmarks.speed.bn_variance", "benchmarks.report"} == set(tools)
    for tool, defined in tools.items():
        assert not {"method", "dataset", "category", "seed", "config_override", "output", "section",
                    "variant", "size"} & set(defined), tool
        for name, flag in defined.items():
            if flag["type"] == "comma separated list of strings":
                assert name.endswith("s"), f"{tool} --{name}: list flags are plural"
            if name in ("methods", "seeds", "overrides", "config_dir", "output_dir", "settings"):
                assert flag["by"] == "benchmarks.common_flags", f"{tool} --{name} is not the shared flag"
    # the timing probes print their one row; the rest write files
    assert all("output_dir" in tools[t] for t in tools if t not in (
        "benchmarks.speed.memory_probe", "benchmarks.speed.aupro_timing", "benchmarks.speed.bn_variance"))
    assert all("overrides" in tools[t] for t in ("benchmarks.leaderboard", "benchmarks.sanity", "benchmarks.speed",
                                                  "benchmarks.export", "benchmarks.speed.memory_probe"))


def test_every_entry_point_is_in_the_readme(tool_flags):
    readme = open(os.path.join(BENCHMARKS, "README.md")).read()
    for tool in tool_flags["tools"]:
        assert f"python -m {tool} " in readme or f"python -m {tool}\n" in readme, tool


@pytest.mark.parametrize("tool, args, error", [
    ("benchmarks.sanity", ["--output_dir=unused", "--variants=nope"], "error: --variants: unknown ['nope']"),
    ("benchmarks.speed", ["--sections=nope"], "error: --sections: unknown ['nope']"),
    ("benchmarks.speed.complexity", [], "error: --config is required"),
    ("benchmarks.speed.aupro_timing", ["--num_images=many"], "error: --num_images=many: give whole numbers"),
    ("benchmarks.speed.memory_probe", ["--probe=fly:ours"], "error: --probe=fly:ours: give <task>:<impl>"),
    ("benchmarks.speed.device_check", ["stray"], "error: unexpected arguments: stray"),
    ("benchmarks.speed.device_check", ["--steps=fly"], "error: --steps: unknown ['fly']"),
    ("benchmarks.export", ["--batch_sizes=one"], "error: --batch_sizes=one: give whole numbers"),
    ("benchmarks.report", [], "error: --workdir is required"),
    ("benchmarks.report", ["--workdir=nowhere"], "error: --workdir=nowhere holds no jobs/ folder"),
])
def test_user_errors_are_one_line(tool, args, error, tmp_path):
    done = subprocess.run([sys.executable, "-m", tool, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(error), done.stderr[-2000:]
