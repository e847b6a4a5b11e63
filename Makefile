# chcp - Cloud Hypervisor Control Plane.
#
#   make build        ./build/chcp-api (release: -O2)
#   make test         install deps, build under ASan+UBSan, run every test suite
#   make run          install deps, build, start the daemon in the foreground
#   make dev          rebuild and restart on every source change
#   make lint         clang-format check, clang-tidy, cppcheck, buf lint
#   make generate     protobuf-c code and the protometa side tables
#   make bench        benchmarks under bench/ (not tests: they only measure)
#   make install-tools  Go/npm tools used by tests and benchmarks
#
# Variables: B (build dir), SAN=1 (sanitizers), CC.

B ?= build
SAN ?= 0
CC ?= cc
PREFIX ?= /usr/local
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

PKGS := libuv libnghttp2 libprotobuf-c jansson zlib sqlite3 libsystemd libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lm -lpthread

CFLAGS_COMMON := -std=gnu17 -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wformat=2 \
	-g -D_GNU_SOURCE -DCHCP_VERSION='"$(VERSION)"' -DCHCP_GIT_REV='"$(GIT_REV)"' \
	-Isrc -I$(B)/gen $(PKG_CFLAGS) -MMD -MP
ifeq ($(SAN),1)
OPT := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
else
OPT := -O2
LDSAN :=
endif
CFLAGS := $(CFLAGS_COMMON) $(OPT) $(EXTRA_CFLAGS)
# Generated code is not ours to warn about.
GEN_CFLAGS := -std=gnu17 -g -D_GNU_SOURCE -I$(B)/gen -Isrc $(PKG_CFLAGS) $(OPT) -MMD -MP
LDFLAGS := $(LDSAN) $(EXTRA_LDFLAGS)

# ---- generated protobuf code ------------------------------------------------

WKT := any duration empty field_mask struct timestamp wrappers
WKT_PROTOS := $(patsubst %,/usr/include/google/protobuf/%.proto,$(WKT))
WKT_C := $(patsubst %,$(B)/gen/google/protobuf/%.pb-c.c,$(WKT))
API_PROTOS := $(shell find proto -name '*.proto' 2>/dev/null | sort)
API_C := $(patsubst proto/%.proto,$(B)/gen/%.pb-c.c,$(API_PROTOS))
DESC_C := $(B)/gen/google/protobuf/descriptor.pb-c.c
PROTOMETA_C := $(B)/gen/chcp_protometa.c
GEN_STAMP := $(B)/gen/.stamp

$(GEN_STAMP): $(API_PROTOS) $(B)/tools/protometa-gen
	@mkdir -p $(B)/gen
	protoc --c_out=$(B)/gen -I/usr/include $(WKT_PROTOS)
	@if [ -n "$(API_PROTOS)" ]; then protoc --c_out=$(B)/gen -Iproto -I/usr/include $(API_PROTOS); fi
	protoc --include_imports --descriptor_set_out=$(B)/gen/chcp.fds -Iproto -I/usr/include \
		$(API_PROTOS) $(WKT_PROTOS)
	$(B)/tools/protometa-gen --name chcp_protometa $(B)/gen/chcp.fds > $(PROTOMETA_C).tmp
	mv $(PROTOMETA_C).tmp $(PROTOMETA_C)
	@touch $@

$(DESC_C):
	@mkdir -p $(B)/gen
	protoc --c_out=$(B)/gen -I/usr/include /usr/include/google/protobuf/descriptor.proto

# The protometa generator is a build tool: plain -O0, no sanitizers needed.
$(B)/tools/protometa-gen: tools/protometa-gen.c $(DESC_C)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu17 -Wall -Wextra -Werror -Wno-unused-parameter -g -I$(B)/gen -Isrc \
		$(PKG_CFLAGS) -o $@ tools/protometa-gen.c $(DESC_C) $(PKG_LIBS)

generate: $(GEN_STAMP)

# ---- the daemon ---------------------------------------------------------------

LIB_SRC := $(shell find src -name '*.c' ! -name main.c | sort)
LIB_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(LIB_SRC))
GEN_OBJ := $(patsubst $(B)/gen/%.c,$(B)/obj/gen/%.o,$(WKT_C) $(API_C) $(PROTOMETA_C))
LIBCHCP := $(B)/libchcp.a

$(B)/obj/%.o: %.c $(GEN_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/obj/gen/%.o: $(B)/gen/%.c $(GEN_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(GEN_CFLAGS) -c -o $@ $<

# Generated sources are produced by the stamp rule.
$(WKT_C) $(API_C) $(PROTOMETA_C): $(GEN_STAMP) ;

$(LIBCHCP): $(LIB_OBJ) $(GEN_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/chcp-api: $(B)/obj/src/main.o $(LIBCHCP)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

build: $(B)/chcp-api

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
-include tests/tests.mk
-include bench/bench.mk

# ---- everyday targets ------------------------------------------------------

deps:
	@bash scripts/deps.sh

install-tools:
	@bash scripts/deps.sh --tools

run: deps build
	./$(B)/chcp-api

dev: deps
	@bash scripts/dev.sh

install: build
	install -D -m 0755 $(B)/chcp-api $(DESTDIR)$(PREFIX)/bin/chcp-api

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

format:
	clang-format -i $(FORMAT_FILES)

lint: deps generate
	@bash scripts/deps.sh --tools
	@B=$(B) bash scripts/lint.sh

# The README's test command; CI (.ci/run) calls it.
test:
	@bash scripts/test.sh

clean:
	rm -rf $(B)

.PHONY: build generate deps install-tools run dev install format lint clean test bench
.DEFAULT_GOAL := build
