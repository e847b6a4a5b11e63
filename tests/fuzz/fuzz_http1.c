/*
 * fuzz_http1.c - libFuzzer target for the HTTP/1.1 input path: bytes go
 * through preface sniffing into http-parser and the request assembly,
 * pipelining, limits and response serialization, without sockets.
 */
#include "fuzz_transport_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_run(NULL, 0, data, size);
    return 0;
}
