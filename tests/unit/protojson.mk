# protojson.mk - test protos for the proto3 JSON codec tests.
#
# tests/unit/proto/**/*.proto are compiled with protoc-c into $(B)/gen-test,
# with their own protometa table (chcptest_protometa), and linked into every
# tests/unit/test_protojson*.c program (instead of tests.mk's generic rule).

PJT_PROTOS := $(shell find tests/unit/proto -name '*.proto' 2>/dev/null | sort)
PJT_GEN := $(B)/gen-test
PJT_C := $(patsubst tests/unit/proto/%.proto,$(PJT_GEN)/%.pb-c.c,$(PJT_PROTOS)) \
	$(PJT_GEN)/chcptest_protometa.c
PJT_OBJ := $(patsubst $(PJT_GEN)/%.c,$(B)/obj/gen-test/%.o,$(PJT_C))
PJT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(wildcard tests/unit/test_protojson*.c))

$(PJT_GEN)/.stamp: $(PJT_PROTOS) $(B)/tools/protometa-gen $(GEN_STAMP)
	@mkdir -p $(PJT_GEN)
	protoc --c_out=$(PJT_GEN) -Itests/unit/proto -I/usr/include $(PJT_PROTOS)
	protoc --include_imports --descriptor_set_out=$(PJT_GEN)/chcptest.fds \
		-Itests/unit/proto -I/usr/include $(PJT_PROTOS)
	$(B)/tools/protometa-gen --name chcptest_protometa $(PJT_GEN)/chcptest.fds \
		> $(PJT_GEN)/chcptest_protometa.c.tmp
	mv $(PJT_GEN)/chcptest_protometa.c.tmp $(PJT_GEN)/chcptest_protometa.c
	@touch $@

$(PJT_C): $(PJT_GEN)/.stamp ;

$(B)/obj/gen-test/%.o: $(PJT_GEN)/%.c $(PJT_GEN)/.stamp
	@mkdir -p $(dir $@)
	$(CC) $(GEN_CFLAGS) -I$(PJT_GEN) -c -o $@ $<

$(PJT_BIN): $(B)/tests/%: tests/unit/%.c $(PJT_OBJ) $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -I$(PJT_GEN) $(LDFLAGS) -o $@ $< $(PJT_OBJ) $(LIBCHCP) \
		$(PKG_LIBS) -lcmocka
