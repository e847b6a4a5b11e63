# conformance.mk - the official ConnectRPC conformance suite (connectconformance,
# server mode) against chcp's transport + rpc stack (included by tests/tests.mk).
#
#   make B=build/x conformance-test         release build
#   make B=build/x SAN=1 conformance-test   under ASan+UBSan
#
# The conformance .proto files come from the pinned Go module (version in
# tests/conformance/runner-version, installed into .tools/conformance/<version>/
# by `make install-tools`) and are never committed. protobuf-c 1.4
# rejects proto3 `optional`, so each `optional T name = N;` is rewritten into
# the equivalent one-field `oneof _name { T name = N; }` in the build dir.

CONF_B := $(B)/conformance
CONF_VERSION := $(shell cat tests/conformance/runner-version)
CONF_TOOLS := .tools/conformance/$(CONF_VERSION)
CONF_SRC_PROTO := $(CONF_TOOLS)/proto/connectrpc/conformance/v1
CONF_FILES := config service server_compat
CONF_PROTO := $(patsubst %,$(CONF_B)/proto/connectrpc/conformance/v1/%.proto,$(CONF_FILES))
CONF_GEN_C := $(patsubst %,$(CONF_B)/gen/connectrpc/conformance/v1/%.pb-c.c,$(CONF_FILES)) \
	$(CONF_B)/gen/conformance_protometa.c
CONF_GEN_O := $(patsubst %.c,%.o,$(CONF_GEN_C))
CONF_STAMP := $(CONF_B)/gen/.stamp
CONF_RUNNER := $(CONF_TOOLS)/bin/connectconformance

$(CONF_SRC_PROTO)/%.proto:
	@echo "missing $@: run 'make install-tools' (scripts/deps.sh --tools)" >&2; exit 1

$(CONF_B)/proto/connectrpc/conformance/v1/%.proto: $(CONF_SRC_PROTO)/%.proto
	@mkdir -p $(dir $@)
	sed -E 's/^([[:space:]]*)optional[[:space:]]+([A-Za-z0-9_.]+)[[:space:]]+([A-Za-z0-9_]+)[[:space:]]*=[[:space:]]*([0-9]+)[[:space:]]*;/\1oneof _\3 { \2 \3 = \4; }/' $< > $@.tmp
	mv $@.tmp $@

$(CONF_STAMP): $(CONF_PROTO) $(B)/tools/protometa-gen
	@mkdir -p $(CONF_B)/gen
	protoc --c_out=$(CONF_B)/gen -I$(CONF_B)/proto -I/usr/include $(CONF_PROTO)
	protoc --include_imports --descriptor_set_out=$(CONF_B)/conformance.fds \
		-I$(CONF_B)/proto -I/usr/include $(CONF_PROTO)
	$(B)/tools/protometa-gen --name conformance_protometa $(CONF_B)/conformance.fds \
		> $(CONF_B)/gen/conformance_protometa.c.tmp
	mv $(CONF_B)/gen/conformance_protometa.c.tmp $(CONF_B)/gen/conformance_protometa.c
	@touch $@

$(CONF_GEN_C): $(CONF_STAMP) ;

$(CONF_B)/gen/%.o: $(CONF_B)/gen/%.c $(CONF_STAMP)
	$(CC) $(GEN_CFLAGS) -I$(CONF_B)/gen -c -o $@ $<

CONF_SERVER_SRC := tests/conformance/server.c tests/conformance/streams.c

$(CONF_B)/server: $(CONF_SERVER_SRC) tests/conformance/conformance.h $(CONF_GEN_O) $(LIBCHCP)
	$(CC) $(CFLAGS) -I$(CONF_B)/gen -Itests/conformance $(LDFLAGS) -o $@ $(CONF_SERVER_SRC) \
		$(CONF_GEN_O) $(LIBCHCP) $(PKG_LIBS)

conformance-build: $(CONF_B)/server

conformance-test: $(CONF_B)/server
	@test -x $(CONF_RUNNER) || { echo "missing $(CONF_RUNNER): run 'make install-tools'" >&2; exit 1; }
	bash tests/conformance/run.sh $(CONF_RUNNER) $(CONF_B)/server

.PHONY: conformance-build conformance-test
