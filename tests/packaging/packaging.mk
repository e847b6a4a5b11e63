# packaging.mk - the Debian package and the systemd unit (tests/packaging/).
# Builds the package (make deb: a release build of its own in build/deb) and
# a release stand-in next to it, then installs the package on this machine
# for real: root only, see tests/packaging/conftest.py. A private --basetemp:
# other pytest sessions prune the shared /tmp/pytest-of-$USER.

packaging-test:
	@$(MAKE) --no-print-directory deb
	@$(MAKE) --no-print-directory B=build/deb SAN=0 standin-build >/dev/null
	@bt=$$(mktemp -d /tmp/chcp-pkg.XXXXXX) && \
	python3 -m pytest -q -p no:cacheprovider --basetemp=$$bt tests/packaging; \
	rc=$$?; rm -rf $$bt; exit $$rc

.PHONY: packaging-test
