# Every target uses the project's virtualenv in .venv/ (made on first use).
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
# Built binaries and images, keyed by version: outside the clone, shared by every clone (as in CI).
export LEPTON_CACHE_DIR ?= $(HOME)/.cache/lepton-operator

.PHONY: deps venv crds openapi lint typecheck test unit e2e cluster-build cluster-up cluster-down images operator demo demo-down verify bench clean

deps: ## Debian packages for the local cluster, its real nodes and the images (root; only what is missing)
	cluster/system-deps.sh

venv: $(VENV_STAMP)
$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[trainer,dev]'
	touch $@

crds: venv ## regenerate crds/ and the chart's copies from the pydantic models
	$(PY) -m lepton_operator.crdgen --write

openapi: venv ## re-vendor spec.template's PodSpec schema (operator/openapi/) from the Kubernetes release in cluster/versions.env, then make crds
	source cluster/versions.env && dir="$$(GOTOOLCHAIN=local go mod download -json "k8s.io/kubernetes@$$KUBE_VERSION" \
	    | $(PY) -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')" && $(PY) -m lepton_operator.k8sschema "$$dir"
	$(PY) -m lepton_operator.crdgen --write

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy operator/lepton_operator cluster/lepton_cluster trainer_image/lepton_trainer
	.venv/bin/lint-imports  # the operator's layers (.importlinter)

cluster-build: ## build (or reuse) the control-plane binaries
	cluster/build.sh

images: deps venv ## build localhost/lepton-operator:dev and localhost/lepton-trainer:dev without Docker (cached; docs/images.md)
	$(PY) -m lepton_cluster.images build

cluster-up: deps venv ## start etcd, apiserver, scheduler, controller-manager and kwok GPU nodes
	@$(PY) -m lepton_cluster up

cluster-down: venv
	@$(PY) -m lepton_cluster down

operator: venv ## run the operator against $$KUBECONFIG in the foreground
	$(PY) -m lepton_operator

demo: deps venv cluster-build ## train and serve a real model: cluster with real nodes, images, helm install, digits job, InferenceService (docs/demo.md)
	@$(PY) -m lepton_cluster.demo

demo-down: venv ## stop the control plane and its real nodes (nothing of the demo is left)
	@$(PY) -m lepton_cluster.demo down

unit: venv
	$(PY) -m pytest tests/unit

e2e: deps venv
	$(PY) -m pytest tests/e2e

test: deps venv ## the whole suite: unit tests, then e2e tests on the local control plane
	$(PY) -m pytest

verify: lint test

clean:
	rm -rf .venv build *.egg-info
