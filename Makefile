# `make test` works on a fresh clone with only Python 3.11 and make: the first run builds .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install test test-quick demo compare tradeoff data badnets zoo patterns fidelity detection sweep speed gallery architecture clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(INSTALLED)

test: $(INSTALLED)
	$(PY) -m pytest

# For iteration only: the tests not marked slow (no trained fixture, subprocess or build; about half a
# minute on 2 cores; docs/development.md). `make test`, which CI runs, runs them all.
test-quick: $(INSTALLED)
	$(PY) -m pytest -m "not slow"

# The main job's quick check: build the data if missing, repair and evaluate every BadNet with seed 0
# (about 5 minutes on 2 cores), check each number against the README's range over seeds 0-2, write only
# under results/. The full 3-seed table (about 16 minutes): .venv/bin/python benchmark.py demo --seeds 0 1 2
demo: $(INSTALLED)
	$(PY) benchmark.py demo

# Every repair method on every benchmark net, the attack zoo's included (results/comparison.md, .json;
# the README's figures in docs/), then where each backdoor lives (results/oracle.md, .json).
compare: $(INSTALLED)
	$(PY) benchmark.py compare --figures-dir docs
	$(PY) benchmark.py oracle

# What each repair method trades as its strength varies: every method once per net on feature_collision,
# sunglasses and adap_blend at its defaults, every strength its rule measures judged as G
# (results/tradeoff.md, .json; the figure docs/tradeoff.png; resumes from results/tradeoff/).
tradeoff: $(INSTALLED)
	$(PY) benchmark.py tradeoff --figures-dir docs

# The embedded benchmark: data (ignored by git, rebuilt in under two minutes), the BadNets and the clean
# reference net (committed).
data: $(INSTALLED)
	$(PY) benchmark.py data

badnets: $(INSTALLED) data/clean_test_data.h5
	$(PY) benchmark.py badnets

# The attack zoo's BadNets (blended, wanet, trojannn, bpp, low_frequency, adap_blend; committed), 6-10
# minutes each on 2 cores.
zoo: $(INSTALLED) data/clean_test_data.h5
	$(PY) benchmark.py badnets --only zoo

# The zoo's two optimised triggers (committed in fineprune/benchmark/patterns/), from models/clean_net.h5.
patterns: $(INSTALLED)
	$(PY) benchmark.py patterns

data/clean_test_data.h5:
	$(MAKE) data

# The synthetic BadNets beside the real challenge BadNets (../shared/csaw), statistic by statistic
# (results/fidelity.md, .json).
fidelity: $(INSTALLED)
	$(PY) benchmark.py fidelity

# inspect_net.py's margin tests judged by the real challenge BadNets' targets (../shared/csaw), with the
# clean nets' false alarms (results/detection.md, .json; resumes from results/detection/).
detection: $(INSTALLED)
	$(PY) benchmark.py detection

# The sunglasses BadNet's pruning curve beside the real lab3 BadNet's (results/sweep_sunglasses.md).
sweep: $(INSTALLED) data/clean_test_data.h5
	$(PY) benchmark.py sweep

# Images per second of one BadNet and of G (both nets) on the same images (results/speed.json).
speed: $(INSTALLED) data/clean_test_data.h5
	$(PY) benchmark.py speed

# Redraw the committed sample faces of the benchmark (docs/benchmark_faces.png, docs/attack_zoo_faces.png).
gallery: $(INSTALLED)
	$(PY) benchmark.py gallery

# Redraw the committed architecture diagram from the model-building code.
architecture: $(INSTALLED)
	$(PY) -m fineprune.plots model_architecture.png

clean:
	rm -rf $(VENV) .pytest_cache
