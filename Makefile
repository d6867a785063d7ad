# Developer entry points. CI runs .ci/run, which installs everything and runs `check`'s
# equivalent; these targets assume `make setup` (or .ci/run) has been run once.
PY := .venv/bin/python
.DEFAULT_GOAL := check

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e . --group dev
	touch $@

.PHONY: setup fmt lint test test-integration test-under-load rules rules-check rules-test dashboards dashboards-check dashboards-preview demo bench load-test check
setup: .venv/.installed

fmt: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

lint: setup
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .
	.venv/bin/mypy

# Fast unit tests: no Prometheus binary needed, about 1.5 min on 2 cores.
test: setup
	$(PY) -m pytest -m "not integration and not slow and not tools"

# The rest: real Prometheus/Alertmanager, promtool/amtool, and the slow tests.
test-integration: setup
	$(PY) -m pytest -m "integration or slow or tools"

# The whole suite three times under `stress-ng --cpu 2` (Debian's stress-ng).
test-under-load: setup
	.ci/test-under-load

rules: setup
	.venv/bin/ttft-exporter rules --config.file=examples/ttft.yml --rules.output-dir=alerts

rules-check:
	promtool check rules alerts/*.yaml

rules-test:
	promtool test rules alerts/tests/*_test.yaml

# Grafana dashboards from code (dashboards/generate): writes dashboards/*.json and the
# alert-to-panel map dashboards/runbook-panels.yaml, then their copies in deploy/.
dashboards: setup
	$(PY) -m dashboards.generate
	$(PY) deploy/sync.py

# Committed JSON matches the generator, validates against Grafana's schema (generated
# by .ci/grafana-schema with npm), and every panel returns data from a live stack.
dashboards-check: setup
	$(PY) -m dashboards.generate --check
	.ci/grafana-schema
	$(PY) -m pytest tests/dashboards

# PNG previews from any Prometheus that scrapes the exporter: make dashboards-preview PROM=http://...
dashboards-preview: setup
	$(PY) -m dashboards.render --prometheus $(PROM) --out build/dashboard-previews

demo: setup
	.venv/bin/ttft-exporter demo

bench: setup
	$(PY) benchmarks/run.py
	$(PY) benchmarks/bench_flux.py

# `ttft-exporter bench` sweeping the built-in simulator: progress, table, and
# bench-results/ (results.json, results.csv, plots). ARGS go to bench.
load-test: setup
	$(PY) -m benchmarks.load_test $(ARGS)

check:
	.ci/run
