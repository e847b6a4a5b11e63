/*
 * net_tool.c - a command-line front end to src/net for the tests (and for
 * people poking at it): every call of the module, one per run, answers as one
 * JSON object on stdout. The pytest suites run it inside network namespaces
 * of their own; it is also how "a restart of the process" is tested: state
 * lives only in the state directory and on the host.
 *
 *   net-tool [--state DIR] [--net-* VALUE]... COMMAND [ARGS]
 *     config                         the parsed configuration
 *     open                           net_open only (bridge, nftables table)
 *     setup VM [--nics N (default 1)] [--mac I=MAC] [--ipv4 I=ADDR] [--ipv6 I=ADDR]
 *              [--forward tcp|udp:HOST:GUEST] [--dir D] [--hostname H]
 *              [--user-data FILE]
 *     get VM
 *     release VM [--dir D]
 *     reconcile [LIVE_VM]...
 *     tap-open TAP                   opens a queue, reports, closes it
 *     layer BASE LAYER qcow2|copy    net_disk_layer_create
 *     alloc-bench COUNT              allocations per second, database only
 *     setup-bench COUNT [DIR]        one VM's setup/release times (both: make bench-net)
 * The CHCP_NET_* variables are read from the environment. Errors:
 * {"error": {"code", "message"}} and exit status 1 (2 for configuration).
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "net/net_internal.h"

static int fail(const chcp_error *e, int status)
{
    json_t *o =
        json_pack("{s:{s:s, s:s}}", "error", "code", code_name(e->code), "message", e->message);
    json_dumpf(o, stdout, JSON_COMPACT);
    printf("\n");
    json_decref(o);
    return status;
}

static void emit(json_t *o)
{
    json_dumpf(o, stdout, JSON_COMPACT | JSON_SORT_KEYS);
    printf("\n");
    json_decref(o);
}

static const char *env_get(const char *name, void *ud)
{
    return getenv(name);
}

static json_t *vm_json(const net_vm *v)
{
    json_t *nics = json_array();
    for (size_t i = 0; i < v->n_nics; i++) {
        const net_nic *n = &v->nics[i];
        json_t *o = json_pack("{s:s, s:s}", "tap", n->tap, "mac", n->mac);
        if (n->has_ipv4)
            json_object_set_new(o, "ipv4",
                                json_pack("{s:s, s:i, s:s}", "address", n->ipv4, "prefix",
                                          (int)n->ipv4_prefix, "gateway", n->ipv4_gateway));
        if (n->has_ipv6)
            json_object_set_new(o, "ipv6",
                                json_pack("{s:s, s:i, s:s}", "address", n->ipv6, "prefix",
                                          (int)n->ipv6_prefix, "gateway", n->ipv6_gateway));
        json_array_append_new(nics, o);
    }
    return json_pack("{s:o, s:s?, s:s?}", "nics", nics, "cmdline", v->cmdline, "seed",
                     v->seed_path);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    chcp_buf b = CHCP_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    buf_append_byte(&b, 0);
    return buf_steal_str(&b);
}

/* "I=VALUE" -> index and value. */
static int indexed(const char *arg, const char **value)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return -1;
    *value = eq + 1;
    return atoi(arg);
}

static int parse_forward(const char *arg, net_port_forward *f)
{
    char proto[8];
    unsigned hp, gp;
    if (sscanf(arg, "%7[a-z]:%u:%u", proto, &hp, &gp) != 3 || hp > 65535 || gp > 65535)
        return -1;
    f->proto = strcmp(proto, "udp") == 0 ? NET_PROTO_UDP : NET_PROTO_TCP;
    if (strcmp(proto, "tcp") && strcmp(proto, "udp"))
        f->proto = (net_proto)7; /* let the module refuse it */
    f->host_port = (uint16_t)hp;
    f->guest_port = (uint16_t)gp;
    return 0;
}

static int cmd_setup(net_ctx *n, int argc, char **argv)
{
    net_nic_request nics[16] = {{0}};
    net_port_forward fwd[80];
    net_vm_request r = {.vm_id = argv[0], .nics = nics, .n_nics = 1};
    char *user_data = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1], *val;
        int idx;
        if (strcmp(a, "--nics") == 0)
            r.n_nics = (size_t)atoi(v);
        else if (strcmp(a, "--dir") == 0)
            r.dir = v;
        else if (strcmp(a, "--hostname") == 0)
            r.hostname = v;
        else if (strcmp(a, "--user-data") == 0) {
            user_data = slurp(v, &r.user_data_len);
            r.user_data = user_data;
        } else if (strcmp(a, "--forward") == 0 && r.n_forwards < ARRAY_SIZE(fwd)) {
            if (parse_forward(v, &fwd[r.n_forwards++]) < 0) {
                fprintf(stderr, "net-tool: bad --forward %s\n", v);
                return 64;
            }
            r.forwards = fwd;
        } else if ((idx = indexed(v, &val)) >= 0 && idx < 16 &&
                   (strcmp(a, "--mac") == 0 || strcmp(a, "--ipv4") == 0 ||
                    strcmp(a, "--ipv6") == 0)) {
            if (a[2] == 'm')
                nics[idx].mac = val;
            else if (a[5] == '4')
                nics[idx].ipv4 = val;
            else
                nics[idx].ipv6 = val;
        } else {
            fprintf(stderr, "net-tool: bad setup argument %s\n", a);
            return 64;
        }
    }
    net_vm v;
    chcp_error *err = NULL;
    int rc = net_vm_setup(n, &r, &v, &err);
    free(user_data);
    if (rc < 0) {
        rc = fail(err, 1);
        error_free(err);
        return rc;
    }
    emit(vm_json(&v));
    net_vm_clear(&v);
    return 0;
}

/* Allocations per second straight from the database (no host objects): COUNT
 * VMs with one IPv4 address each from a /16, then their release. */
static int alloc_bench(const char *state, int count)
{
    chcp_error *err = NULL;
    net_db *db = net_db_open(state, &err);
    net_prefix pre;
    net_pool pool;
    net_prefix_parse("10.96.0.0/16", &pre, NULL);
    net_pool_init(&pool, NET_MODE_BRIDGE, &pre, NULL);
    if (!db)
        return fail(err, 1);
    net_nic_request nic = {0};
    net_db_nic out[NET_MAX_NICS];
    uint64_t t0 = time_mono_ns();
    for (int i = 0; i < count; i++) {
        char id[32];
        snprintf(id, sizeof(id), "bench-%d", i);
        net_db_alloc_request r = {
            .vm_id = id, .tap_prefix = "chcp", .nics = &nic, .n_nics = 1, .pool4 = &pool};
        if (net_db_allocate(db, &r, out, &err) < 0) {
            net_db_close(db);
            return fail(err, 1);
        }
    }
    uint64_t t1 = time_mono_ns();
    for (int i = 0; i < count; i++) {
        char id[32];
        snprintf(id, sizeof(id), "bench-%d", i);
        net_db_release(db, id, NULL);
    }
    uint64_t t2 = time_mono_ns();
    net_db_close(db);
    emit(json_pack("{s:i, s:f, s:f}", "count", count, "alloc_per_second",
                   count / ((double)(t1 - t0) / 1e9), "release_per_second",
                   count / ((double)(t2 - t1) / 1e9)));
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static json_t *stats_ms(uint64_t *ns, int n)
{
    qsort(ns, (size_t)n, sizeof(*ns), cmp_u64);
    return json_pack("{s:f, s:f, s:f}", "median", (double)ns[n / 2] / 1e6, "p90",
                     (double)ns[(n * 9) / 10] / 1e6, "min", (double)ns[0] / 1e6);
}

/* One VM's networking set up and torn down COUNT times: one NIC, a port
 * forward, and a seed in DIR when given. */
static int setup_bench(net_ctx *n, int count, const char *dir)
{
    net_nic_request nic = {0};
    net_port_forward fwd = {NET_PROTO_TCP, 18080, 80};
    uint64_t *up = xcalloc((size_t)count, sizeof(*up)), *down = xcalloc((size_t)count, 8);
    chcp_error *err = NULL;
    for (int i = 0; i < count; i++) {
        net_vm_request r = {.vm_id = "bench",
                            .nics = &nic,
                            .n_nics = 1,
                            .forwards = &fwd,
                            .n_forwards = 1,
                            .dir = dir};
        net_vm v;
        uint64_t t0 = time_mono_ns();
        int rc = net_vm_setup(n, &r, &v, &err);
        uint64_t t1 = time_mono_ns();
        net_vm_clear(&v);
        if (rc == 0)
            rc = net_vm_release(n, "bench", dir, &err);
        uint64_t t2 = time_mono_ns();
        if (rc < 0) {
            free(up);
            free(down);
            return fail(err, 1);
        }
        up[i] = t1 - t0;
        down[i] = t2 - t1;
    }
    emit(json_pack("{s:i, s:b, s:o, s:o}", "runs", count, "seed", dir != NULL, "setup_ms",
                   stats_ms(up, count), "release_ms", stats_ms(down, count)));
    free(up);
    free(down);
    return 0;
}

static int run(net_ctx *n, int argc, char **argv)
{
    const char *cmd = argv[0];
    chcp_error *err = NULL;
    int rc = 0;
    if (strcmp(cmd, "open") == 0) {
        emit(json_pack("{s:b}", "ok", 1));
    } else if (strcmp(cmd, "setup") == 0 && argc >= 2) {
        return cmd_setup(n, argc - 1, argv + 1);
    } else if (strcmp(cmd, "get") == 0 && argc == 2) {
        net_vm v;
        if ((rc = net_vm_get(n, argv[1], &v, &err)) == 0)
            emit(vm_json(&v));
        net_vm_clear(&v);
    } else if (strcmp(cmd, "release") == 0 && argc >= 2) {
        const char *dir = argc == 4 && strcmp(argv[2], "--dir") == 0 ? argv[3] : NULL;
        if ((rc = net_vm_release(n, argv[1], dir, &err)) == 0)
            emit(json_pack("{s:b}", "ok", 1));
    } else if (strcmp(cmd, "reconcile") == 0) {
        net_reconcile_result res;
        if ((rc = net_reconcile(n, (const char *const *)argv + 1, (size_t)argc - 1, &res, &err)) ==
            0)
            emit(json_pack("{s:i, s:i, s:i}", "taps", (int)res.taps, "rules", (int)res.rules,
                           "allocations", (int)res.allocations));
    } else if (strcmp(cmd, "tap-open") == 0 && argc == 2) {
        int fd = net_tap_open(argv[1], &err);
        if (fd >= 0) {
            emit(json_pack("{s:b}", "ok", 1));
            close(fd);
        }
        rc = fd < 0 ? -1 : 0;
    } else if (strcmp(cmd, "setup-bench") == 0 && (argc == 2 || argc == 3)) {
        return setup_bench(n, atoi(argv[1]), argc == 3 ? argv[2] : NULL);
    } else {
        fprintf(stderr, "net-tool: unknown command %s (see tests/net/net_tool.c)\n", cmd);
        return 64;
    }
    if (rc < 0) {
        rc = fail(err, 1);
        error_free(err);
    }
    return rc;
}

static int layer(int argc, char **argv)
{
    if (argc != 4)
        return 64;
    chcp_error *err = NULL;
    net_layer_kind k = strcmp(argv[3], "copy") == 0 ? NET_LAYER_COPY : NET_LAYER_QCOW2;
    if (net_disk_layer_create(argv[1], argv[2], k, &err) < 0) {
        int rc = fail(err, 1);
        error_free(err);
        return rc;
    }
    emit(json_pack("{s:b}", "ok", 1));
    return 0;
}

int main(int argc, char **argv)
{
    const char *state = ".";
    const char *flags[NET_CONFIG_N_SETTINGS] = {0};
    int i = 1;
    for (; i + 1 < argc && str_has_prefix(argv[i], "--"); i += 2) {
        int k = net_config_flag_index(argv[i], strlen(argv[i]));
        if (strcmp(argv[i], "--state") == 0)
            state = argv[i + 1];
        else if (k >= 0)
            flags[k] = argv[i + 1];
        else
            break;
    }
    if (i >= argc) {
        fprintf(stderr, "net-tool: no command (see tests/net/net_tool.c)\n");
        return 64;
    }
    if (strcmp(argv[i], "layer") == 0)
        return layer(argc - i, argv + i);
    if (strcmp(argv[i], "alloc-bench") == 0 && i + 1 < argc)
        return alloc_bench(state, atoi(argv[i + 1]));
    net_config cfg;
    chcp_error *err = NULL;
    if (net_config_load(&cfg, env_get, NULL, flags, &err) < 0) {
        int rc = fail(err, 2);
        error_free(err);
        net_config_free(&cfg);
        return rc;
    }
    if (strcmp(argv[i], "config") == 0) {
        char v4[64] = "none", v6[80] = "none";
        if (cfg.ipv4.family)
            net_prefix_format(&cfg.ipv4, v4, sizeof(v4));
        if (cfg.ipv6.family)
            net_prefix_format(&cfg.ipv6, v6, sizeof(v6));
        emit(json_pack("{s:s, s:s, s:s, s:s, s:i, s:b, s:b, s:i, s:s, s:s, s:i, s:i, s:s}", "mode",
                       net_mode_name(cfg.mode), "bridge", cfg.bridge, "ipv4", v4, "ipv6", v6, "mtu",
                       (int)cfg.mtu, "isolate", cfg.isolate, "nat", cfg.nat, "dns", (int)cfg.n_dns,
                       "tap_prefix", cfg.tap_prefix, "nft_table", cfg.nft_table, "tap_uid",
                       (int)cfg.tap_uid, "tap_gid", (int)cfg.tap_gid, "seed",
                       cfg.seed == NET_SEED_ISO9660 ? "iso9660" : "off"));
        net_config_free(&cfg);
        return 0;
    }
    net_ctx *n = net_open(&cfg, state, &err);
    net_config_free(&cfg);
    if (!n) {
        int rc = fail(err, 1);
        error_free(err);
        return rc;
    }
    int rc = run(n, argc - i, argv + i);
    net_close(n);
    return rc;
}
