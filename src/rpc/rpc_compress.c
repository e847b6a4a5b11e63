/*
 * rpc_compress.c - gzip for request and response messages (zlib), and the
 * encoding negotiation connect-go does.
 *
 * Decompression is bounded: output is produced in chunks and the moment it
 * passes the message limit the work stops with resource_exhausted, so a tiny
 * "zip bomb" costs at most the limit in memory and time. The compressor is
 * kept per server and reset between uses (deflateInit allocates ~256 KiB;
 * doing that per response would dominate small calls).
 */
#include "rpc/rpc_internal.h"

#include <string.h>

int rpc_compression_parse(const char *name, rpc_compression *out)
{
    if (!name || !*name || strcmp(name, "identity") == 0) {
        *out = RPC_COMPRESSION_IDENTITY;
        return 0;
    }
    if (strcmp(name, "gzip") == 0) {
        *out = RPC_COMPRESSION_GZIP;
        return 0;
    }
    return -1;
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
        if (e - p == 4 && strncmp(p, "gzip", 4) == 0)
            return RPC_COMPRESSION_GZIP;
        p = e;
    }
    return RPC_COMPRESSION_IDENTITY;
}

int rpc_gzip_decompress(const uint8_t *in, size_t len, size_t max_out, chcp_buf *out,
                        chcp_error **err)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
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
        size_t chunk = 16384;
        buf_reserve(out, chunk);
        zs.next_out = out->data + out->len;
        zs.avail_out = (uInt)chunk;
        rc = inflate(&zs, Z_NO_FLUSH);
        out->len += chunk - zs.avail_out;
        if (rc == Z_STREAM_END)
            break;
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0) {
            inflateEnd(&zs);
            out->len = start;
            return error_set(err, CHCP_INVALID_ARGUMENT, "decompress: unexpected EOF");
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            const char *why = zs.msg ? zs.msg : "invalid gzip data";
            error_set(err, CHCP_INVALID_ARGUMENT, "decompress: %s", why);
            inflateEnd(&zs);
            out->len = start;
            return -1;
        }
        if (max_out && out->len - start > max_out) {
            inflateEnd(&zs);
            out->len = start;
            return error_set(err, CHCP_RESOURCE_EXHAUSTED,
                             "message is larger than configured max %zu", max_out);
        }
    }
    inflateEnd(&zs);
    if (max_out && out->len - start > max_out) {
        out->len = start;
        return error_set(err, CHCP_RESOURCE_EXHAUSTED, "message is larger than configured max %zu",
                         max_out);
    }
    return 0;
}

int rpc_gzip_compress(z_stream **cache, const uint8_t *in, size_t len, chcp_buf *out,
                      chcp_error **err)
{
    z_stream *zs = *cache;
    if (!zs) {
        zs = xcalloc(1, sizeof(*zs));
        if (deflateInit2(zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
            Z_OK) {
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

void rpc_gzip_cache_free(z_stream **cache)
{
    if (*cache) {
        deflateEnd(*cache);
        free(*cache);
        *cache = NULL;
    }
}
