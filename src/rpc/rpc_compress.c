/*
 * rpc_compress.c - message compression (gzip and deflate via zlib, brotli
 * via libbrotli, zstd via libzstd) and the encoding negotiation connect-go
 * does. "deflate" is the zlib format, as connect-go's and grpc-go's deflate
 * compressors write it.
 *
 * Decompression is bounded: output is produced in chunks and the moment it
 * passes the message limit the work stops with resource_exhausted, so a tiny
 * "zip bomb" costs at most the limit in memory and time. Compressors are
 * kept per server and reset between uses (a gzip deflateInit allocates
 * ~256 KiB, a zstd context more; doing that per message would dominate small
 * calls).
 */
#include "rpc/rpc_internal.h"

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <string.h>
#include <zstd.h>

/* Output is produced (and the limit checked) this many bytes at a time. */
#define CHUNK 16384
/* Brotli's quality 11 costs ~100x quality 5 for a few percent: the wire is
 * loopback or a LAN, the CPU is the VM host's. */
#define BROTLI_QUALITY 5

static const char *const names[RPC_COMPRESSION_COUNT] = {
    [RPC_COMPRESSION_IDENTITY] = "identity", [RPC_COMPRESSION_GZIP] = "gzip",
    [RPC_COMPRESSION_BROTLI] = "br",         [RPC_COMPRESSION_ZSTD] = "zstd",
    [RPC_COMPRESSION_DEFLATE] = "deflate",
};

int rpc_compression_parse(const char *name, rpc_compression *out)
{
    if (!name || !*name) {
        *out = RPC_COMPRESSION_IDENTITY;
        return 0;
    }
    for (int c = 0; c < RPC_COMPRESSION_COUNT; c++) {
        if (strcmp(name, names[c]) == 0) {
            *out = (rpc_compression)c;
            return 0;
        }
    }
    return -1;
}

const char *rpc_compression_name(rpc_compression c)
{
    return (unsigned)c < RPC_COMPRESSION_COUNT ? names[c] : "identity";
}

rpc_compression rpc_compression_negotiate(rpc_compression req, const char *accept)
{
    if (req != RPC_COMPRESSION_IDENTITY || !accept)
        return req;
    /* No q-values in these protocols: the first name we support wins. */
    const char *p = accept;
    while (*p) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        for (int c = RPC_COMPRESSION_GZIP; c < RPC_COMPRESSION_COUNT; c++)
            if ((size_t)(e - p) == strlen(names[c]) && strncmp(p, names[c], (size_t)(e - p)) == 0)
                return (rpc_compression)c;
        p = e;
    }
    return RPC_COMPRESSION_IDENTITY;
}

static int too_large(chcp_buf *out, size_t start, size_t max_out, chcp_error **err)
{
    out->len = start;
    return error_set(err, CHCP_RESOURCE_EXHAUSTED, "message is larger than configured max %zu",
                     max_out);
}

/* ---- zlib: gzip (windowBits 15+16) and deflate (zlib format, 15) -------- */

static int zlib_decompress(int window_bits, const uint8_t *in, size_t len, size_t max_out,
                           chcp_buf *out, chcp_error **err)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, window_bits) != Z_OK)
        return error_set(err, CHCP_INTERNAL, "decompress: zlib init failed");
    size_t start = out->len;
    int rc = Z_OK;
    zs.next_in = (Bytef *)in;
    /* Feed at most UINT_MAX at a time (avail_in is an unsigned int). */
    size_t in_left = len;
    while (rc != Z_STREAM_END) {
        if (zs.avail_in == 0 && in_left > 0) {
            zs.avail_in = in_left > 1u << 30 ? 1u << 30 : (uInt)in_left;
            in_left -= zs.avail_in;
        }
        buf_reserve(out, CHUNK);
        zs.next_out = out->data + out->len;
        zs.avail_out = CHUNK;
        rc = inflate(&zs, Z_NO_FLUSH);
        out->len += CHUNK - zs.avail_out;
        if (rc == Z_STREAM_END)
            break;
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0) {
            inflateEnd(&zs);
            out->len = start;
            return error_set(err, CHCP_INVALID_ARGUMENT, "decompress: unexpected EOF");
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            const char *why = zs.msg ? zs.msg : "invalid compressed data";
            error_set(err, CHCP_INVALID_ARGUMENT, "decompress: %s", why);
            inflateEnd(&zs);
            out->len = start;
            return -1;
        }
        if (max_out && out->len - start > max_out) {
            inflateEnd(&zs);
            return too_large(out, start, max_out, err);
        }
    }
    inflateEnd(&zs);
    if (max_out && out->len - start > max_out)
        return too_large(out, start, max_out, err);
    return 0;
}

static int zlib_compress(z_stream **cache, int window_bits, const uint8_t *in, size_t len,
                         chcp_buf *out, chcp_error **err)
{
    z_stream *zs = *cache;
    if (!zs) {
        zs = xcalloc(1, sizeof(*zs));
        if (deflateInit2(zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            free(zs);
            return error_set(err, CHCP_INTERNAL, "compress: zlib init failed");
        }
        *cache = zs;
    } else {
        deflateReset(zs);
    }
    if (len > UINT32_MAX / 2)
        return error_set(err, CHCP_RESOURCE_EXHAUSTED, "compress: message too large");
    size_t bound = deflateBound(zs, (uLong)len);
    buf_reserve(out, bound);
    zs->next_in = (Bytef *)in;
    zs->avail_in = (uInt)len;
    zs->next_out = out->data + out->len;
    zs->avail_out = (uInt)bound;
    int rc = deflate(zs, Z_FINISH);
    if (rc != Z_STREAM_END)
        return error_set(err, CHCP_INTERNAL, "compress: deflate failed (%d)", rc);
    out->len += bound - zs->avail_out;
    return 0;
}

static void zlib_free(z_stream **cache)
{
    if (*cache) {
        deflateEnd(*cache);
        free(*cache);
        *cache = NULL;
    }
}

int rpc_gzip_decompress(const uint8_t *in, size_t len, size_t max_out, chcp_buf *out,
                        chcp_error **err)
{
    return zlib_decompress(15 + 16, in, len, max_out, out, err);
}

int rpc_gzip_compress(z_stream **cache, const uint8_t *in, size_t len, chcp_buf *out,
                      chcp_error **err)
{
    return zlib_compress(cache, 15 + 16, in, len, out, err);
}

void rpc_gzip_cache_free(z_stream **cache)
{
    zlib_free(cache);
}

/* ---- brotli --------------------------------------------------------------- */

static int brotli_decompress(const uint8_t *in, size_t len, size_t max_out, chcp_buf *out,
                             chcp_error **err)
{
    BrotliDecoderState *st = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    if (!st)
        return error_set(err, CHCP_INTERNAL, "decompress: brotli init failed");
    size_t start = out->len, avail_in = len;
    const uint8_t *next_in = in;
    BrotliDecoderResult rc;
    do {
        buf_reserve(out, CHUNK);
        size_t avail_out = CHUNK;
        uint8_t *next_out = out->data + out->len;
        rc = BrotliDecoderDecompressStream(st, &avail_in, &next_in, &avail_out, &next_out, NULL);
        out->len += CHUNK - avail_out;
        if (max_out && out->len - start > max_out) {
            BrotliDecoderDestroyInstance(st);
            return too_large(out, start, max_out, err);
        }
    } while (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT);
    BrotliDecoderDestroyInstance(st);
    if (rc == BROTLI_DECODER_RESULT_SUCCESS && avail_in == 0)
        return 0;
    out->len = start;
    return error_set(err, CHCP_INVALID_ARGUMENT, "decompress: %s",
                     rc == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT ? "unexpected EOF"
                                                                  : "invalid brotli data");
}

static int brotli_compress(const uint8_t *in, size_t len, chcp_buf *out, chcp_error **err)
{
    size_t bound = BrotliEncoderMaxCompressedSize(len);
    if (bound == 0)
        return error_set(err, CHCP_RESOURCE_EXHAUSTED, "compress: message too large");
    buf_reserve(out, bound);
    size_t n = bound;
    if (!BrotliEncoderCompress(BROTLI_QUALITY, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, len, in,
                               &n, out->data + out->len))
        return error_set(err, CHCP_INTERNAL, "compress: brotli failed");
    out->len += n;
    return 0;
}

/* ---- zstd ------------------------------------------------------------------- */

static int zstd_decompress(const uint8_t *in, size_t len, size_t max_out, chcp_buf *out,
                           chcp_error **err)
{
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (!ds)
        return error_set(err, CHCP_INTERNAL, "decompress: zstd init failed");
    /* A frame may ask for a huge window; the message limit bounds it. */
    ZSTD_DCtx_setParameter(ds, ZSTD_d_windowLogMax, 27);
    size_t start = out->len;
    ZSTD_inBuffer ib = {in, len, 0};
    size_t rc = 1;
    while (rc != 0) {
        buf_reserve(out, CHUNK);
        ZSTD_outBuffer ob = {out->data + out->len, CHUNK, 0};
        rc = ZSTD_decompressStream(ds, &ob, &ib);
        out->len += ob.pos;
        if (ZSTD_isError(rc)) {
            error_set(err, CHCP_INVALID_ARGUMENT, "decompress: %s", ZSTD_getErrorName(rc));
            ZSTD_freeDStream(ds);
            out->len = start;
            return -1;
        }
        if (max_out && out->len - start > max_out) {
            ZSTD_freeDStream(ds);
            return too_large(out, start, max_out, err);
        }
        if (rc != 0 && ib.pos == ib.size && ob.pos < ob.size) {
            ZSTD_freeDStream(ds);
            out->len = start;
            return error_set(err, CHCP_INVALID_ARGUMENT, "decompress: unexpected EOF");
        }
    }
    ZSTD_freeDStream(ds);
    /* Concatenated frames are legal zstd; anything else left is not. */
    if (ib.pos < ib.size)
        return zstd_decompress(in + ib.pos, len - ib.pos,
                               max_out ? max_out - (out->len - start) : 0, out, err);
    return 0;
}

static int zstd_compress(ZSTD_CCtx **cache, const uint8_t *in, size_t len, chcp_buf *out,
                         chcp_error **err)
{
    if (!*cache && !(*cache = ZSTD_createCCtx()))
        return error_set(err, CHCP_INTERNAL, "compress: zstd init failed");
    size_t bound = ZSTD_compressBound(len);
    buf_reserve(out, bound);
    size_t n = ZSTD_compressCCtx(*cache, out->data + out->len, bound, in, len, ZSTD_CLEVEL_DEFAULT);
    if (ZSTD_isError(n))
        return error_set(err, CHCP_INTERNAL, "compress: %s", ZSTD_getErrorName(n));
    out->len += n;
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------ */

int rpc_decompress(rpc_compression c, const uint8_t *in, size_t len, size_t max_out, chcp_buf *out,
                   chcp_error **err)
{
    switch (c) {
    case RPC_COMPRESSION_GZIP:
        return zlib_decompress(15 + 16, in, len, max_out, out, err);
    case RPC_COMPRESSION_DEFLATE:
        return zlib_decompress(15, in, len, max_out, out, err);
    case RPC_COMPRESSION_BROTLI:
        return brotli_decompress(in, len, max_out, out, err);
    case RPC_COMPRESSION_ZSTD:
        return zstd_decompress(in, len, max_out, out, err);
    default:
        if (max_out && len > max_out)
            return too_large(out, out->len, max_out, err);
        buf_append(out, in, len);
        return 0;
    }
}

int rpc_compress(rpc_server *s, rpc_compression c, const uint8_t *in, size_t len, chcp_buf *out,
                 chcp_error **err)
{
    switch (c) {
    case RPC_COMPRESSION_GZIP:
        return zlib_compress((z_stream **)&s->compressors[c], 15 + 16, in, len, out, err);
    case RPC_COMPRESSION_DEFLATE:
        return zlib_compress((z_stream **)&s->compressors[c], 15, in, len, out, err);
    case RPC_COMPRESSION_BROTLI:
        return brotli_compress(in, len, out, err);
    case RPC_COMPRESSION_ZSTD:
        return zstd_compress((ZSTD_CCtx **)&s->compressors[c], in, len, out, err);
    default:
        buf_append(out, in, len);
        return 0;
    }
}

void rpc_compressors_free(rpc_server *s)
{
    zlib_free((z_stream **)&s->compressors[RPC_COMPRESSION_GZIP]);
    zlib_free((z_stream **)&s->compressors[RPC_COMPRESSION_DEFLATE]);
    ZSTD_freeCCtx(s->compressors[RPC_COMPRESSION_ZSTD]);
    s->compressors[RPC_COMPRESSION_ZSTD] = NULL;
}
