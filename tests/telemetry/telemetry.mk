# telemetry.mk - the OTLP encoding check against OpenTelemetry's own decoder.
$(B)/tests/otlp_sample: tests/telemetry/otlp_sample.c $(LIBCHCP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBCHCP) $(PKG_LIBS)

telemetry-test: $(B)/tests/otlp_sample
	OTLP_SAMPLE=$(B)/tests/otlp_sample python3 -m pytest -q tests/telemetry

.PHONY: telemetry-test
