"""The benchmark scripts run end to end at a tiny shape and print well-formed tables (timings are not asserted)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

NUMBER = r"[0-9]+\.[0-9]+"


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / script), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _table_rows(out: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("|---")]


def _tables(out: str) -> list[list[list[str]]]:
    """Every Markdown table of the output: runs of consecutive table lines, header first."""
    tables: list[list[list[str]]] = []
    previous = False
    for line in out.splitlines():
        is_row = line.startswith("| ")
        if is_row and not previous:
            tables.append([])
        if is_row:
            tables[-1].append([c.strip() for c in line.strip("|").split("|")])
        previous = is_row or line.startswith("|---")
    return tables


def test_arch_prints_every_setting_with_ratios_and_the_bound() -> None:
    out = _run("arch.py", "--batch-size", "64", "--in-features", "32", "--expert-layers", "16", "8", "--rounds", "1",
               "--grid", "8", "2", "1", "1", "--grid", "4", "3", "0", "2")
    timing, cost = _tables(out)
    header, *rows = timing
    assert header[0] == "E" and len(rows) == 2
    for row, (E, T, k_s, k_a) in zip(rows, [(8, 2, 1, 1), (4, 3, 0, 2)], strict=True):
        assert row[:4] == [str(E), str(T), str(k_s), str(k_a)]
        mean_u, max_u, bound = re.fullmatch(rf"({NUMBER}) / (\d+) \((\d+)\)", row[4]).groups()
        assert int(bound) == min(E, k_s + T * k_a) and float(mean_u) <= int(max_u) <= int(bound)
        assert all(re.match(NUMBER, cell) for cell in row[5:])
    header, *rows = cost
    assert header[4] == "SMES params (active)" and len(rows) == 2
    for row in rows:
        total, active = re.fullmatch(r"([0-9,]+) \(([0-9,]+)\)", row[4]).groups()
        assert int(active.replace(",", "")) < int(total.replace(",", ""))  # SMES runs a subset of its experts
        smes, mmoe = float(row[6]), float(row[7])
        assert 0 < smes < mmoe  # fewer experts run than MMoE(E)'s E


def test_arch_baselines_prints_every_arch_with_its_cost() -> None:
    out = _run("arch.py", "--baselines", "--batch-size", "32", "--in-features", "16", "--expert-layers", "8", "4",
               "--rounds", "1", "--grid", "4", "3", "1", "1")
    (table,) = _tables(out)
    header, *rows = table
    assert header[:4] == ["arch", "params", "active params", "MFLOPs/instance"]
    names = [r[0] for r in rows]
    assert names == ["smes", "mmoe", "omoe", "ple", "shared_bottom", "home", "mome", "rankmixer", "rankmixer_sparse"]
    by_name = {r[0]: r for r in rows}
    for name, row in by_name.items():
        total, active = int(row[1].replace(",", "")), float(row[2].replace(",", ""))
        assert 0 < active <= total and float(row[3]) > 0, name
    assert float(by_name["rankmixer_sparse"][2].replace(",", "")) < int(by_name["rankmixer_sparse"][1].replace(",", ""))


def test_profile_arch_splits_the_step_into_stages() -> None:
    out = _run("profile_arch.py", "--batch-size", "64", "--in-features", "32", "--expert-layers", "16", "8",
               "--tasks", "3", "--experts", "8", "--rounds", "1")
    rows = {row[0]: row[1:] for row in _table_rows(out)[1:]}
    assert {"router projection (D -> T*E)", "experts (grouped GEMMs, bias, ReLU)", "combine (gated sum per task)",
            "sum of stages", "whole step"} <= set(rows)
    assert float(rows["whole step"][0]) > 0 and rows["whole step"][1] == "100%"


def test_scaling_writes_its_plot(tmp_path: Path) -> None:
    plot = tmp_path / "scaling.png"
    out = _run("scaling.py", "--experts", "4", "8", "--batch-size", "64", "--in-features", "32", "--expert-layers",
               "16", "8", "--tasks", "3", "--rounds", "1", "--plot", str(plot))
    assert len(_table_rows(out)) == 3
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_serving_prints_latency_rows_and_goal_ratios(tmp_path: Path) -> None:
    out = _run("serving.py", "--experts", "8", "--tasks", "3", "--in-features", "16", "--expert-layers", "8", "8",
               "--table-rows", "50", "--dim", "4", "--candidates", "4", "16", "--requests", "3", "--warmup", "1",
               "--threads", "1", "--embeddings", "int8", "--json", str(tmp_path / "r.json"))
    rows = _table_rows(out)
    latency = [r for r in rows if r[0].endswith(" int8")]
    assert {r[0].split(" ")[0] for r in latency} >= {"smes", "mmoe_E8", "naive_topk"}
    assert len(latency) == 4 * 2  # four models x two request sizes
    for r in latency:
        p50, p99, throughput, size, rss = map(float, r[3:8])
        assert 0 < p50 <= p99 and throughput > 0 and size > 0 and rss > 50
    ratios = [r for r in rows if r[0] == "int8"]
    assert [r[2] for r in ratios] == ["4", "16"] and all(re.match(NUMBER, c) for r in ratios for c in r[3:])
    floor = re.search(r"the 8 experts' weights are ([0-9.]+) MB; one pass over them takes ([0-9.]+) ms", out)
    assert floor is not None, out
    weight_read = json.loads((tmp_path / "r.json").read_text())["weight_read"]["1"]
    assert weight_read["mb"] == 8 * (16 * 8 + 8 + 8 * 8 + 8) * 4 / 1e6 and weight_read["ms"] > 0


def test_exact_ids_compares_hash_and_vocab_on_kuairand(tmp_path: Path) -> None:
    out = _run("exact_ids.py", "--out", str(tmp_path), "--seeds", "0", "--steps", "2")
    header, *rows = _table_rows(out.split("\ntest split, SMES", 1)[1])  # after the runs' own printouts
    assert header == ["task", "AUC hash", "AUC vocab", "GAUC hash", "GAUC vocab"]
    assert [r[0] for r in rows][-1] == "mean" and len(rows) == 8
    assert all(re.fullmatch(NUMBER, cell) for row in rows for cell in row[1:])
    assert (tmp_path / "vocab_s0" / "checkpoints").is_dir()
