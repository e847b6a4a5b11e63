# quickstart.mk - the README's quick start, run verbatim in a fresh clone
# (tests/quickstart/quickstart.py). Root only: make deps, namespaces.

quickstart-test:
	python3 tests/quickstart/quickstart.py

.PHONY: quickstart-test
