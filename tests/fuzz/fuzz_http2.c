/*
 * fuzz_http2.c - libFuzzer target for the HTTP/2 input path: the client
 * preface is supplied, the input is the frame stream that follows it, fed
 * to the nghttp2 server session and the stream/request mapping.
 */
#include "fuzz_transport_common.h"

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(preface, sizeof(preface) - 1, data, size);
    return 0;
}
