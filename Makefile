# Two commands for a fresh machine: `make demo` and `make test`.  Each creates or reuses
# .venv and installs what it needs (stamps are redone when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check -qq
ARGS   ?=
JOBS   ?= 2

.PHONY: demo test bench bench-driu clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-core: pyproject.toml | $(PY)
	$(PIP) -e .
	touch $@

# deepdraw's own DRIU classes are a parity anchor; its other dependencies are not needed for them
# (and would pull a second PyTorch), hence --no-deps.  So is TorchRay's excitation backprop (an
# sdist whose declared dependencies — pycocotools, pymongo — serve its dataset benchmarks only),
# and Quantus 0.6.0 (the evaluation metrics' anchor): it declares opencv-python, which would
# overwrite pytorch-grad-cam's opencv-python-headless in the same cv2 folder; its other needs
# (pandas, matplotlib, scikit-image, scikit-learn) are in the test extra.
# Debian's chromium renders the sweep's HTML report in its test (apt when it is missing and we
# may: root, or passwordless sudo; otherwise that one test skips, saying why).
$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PIP) -e '.[test]'
	$(PIP) --no-deps deepdraw==1.5.0 torchray==1.0.0.2 quantus==0.6.0
	command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo -n); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	  --no-install-recommends chromium >/dev/null; } || echo "chromium not installed: the HTML report test will skip"
	touch $@ $(VENV)/.stamp-core

demo: $(VENV)/.stamp-core
	$(PY) -m jaxretina demo $(ARGS)

test: $(VENV)/.stamp-test
	$(PY) -m pytest -q -n $(JOBS) --dist worksteal --durations=15 $(ARGS)

# jaxretina against Captum / pytorch-grad-cam (needs the test extra's anchors), then wrapped
# Flax / Keras models against jaxretina's own modules and ResNet101's first compile
bench: $(VENV)/.stamp-test
	$(PY) -m benchmarks $(ARGS)
	$(PY) -m benchmarks.wrapped
	$(PY) -m benchmarks.propagation
	$(PY) -m benchmarks.cams
	$(PY) -m benchmarks.perturbation
	$(PY) -m benchmarks.evaluation

# DRIU sizes, chunkings and XLA options, jaxretina only
bench-driu: $(VENV)/.stamp-core
	$(PY) -m benchmarks.driu_attribution $(ARGS)

clean-venv:
	rm -rf $(VENV)
