# Two commands on a fresh machine:
#   make demo   set everything up, then run a short simulated valve-turning session
#   make test   set everything up, then run the tests
# Set-up is idempotent: a virtual environment in .venv, system libraries when missing.

PYTHON ?= python3
# The torch build set-up installs: the CPU build by default; on a GPU machine, e.g.
#   make setup TORCH='torch --index-url https://download.pytorch.org/whl/cu126'
TORCH  ?= torch==2.13.0
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test setup system-deps bench clean

demo: setup
	$(BIN)/slac-robot rollout

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/sim_throughput.py
	$(BIN)/python bench/bus_cycle.py
	$(BIN)/python bench/replay_sample.py
	$(BIN)/python bench/agent_speed.py
	$(BIN)/python bench/control_loop.py
	$(BIN)/python bench/ray_session.py

setup: system-deps $(STAMP)

system-deps:
	@bash tools/install_system_deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) tools/check_python.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# robel carries the D'Claw scene files; its own code needs gym and mujoco-py, which we never
	# import, hence --no-deps. pip >= 24.1 refuses robel's malformed metadata
	# ("transforms3d (>=0.3.0<0.4)"), so an older pip, kept apart in .venv/robel-pip, installs it.
	$(BIN)/python -m pip install --quiet --no-deps --target $(VENV)/robel-pip 'pip<24.1'
	PYTHONPATH=$(VENV)/robel-pip $(BIN)/python -m pip install --quiet --no-deps robel==0.1.2
	touch $(STAMP)

clean:
	rm -rf $(VENV) build dist *.egg-info
