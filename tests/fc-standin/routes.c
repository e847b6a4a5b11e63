/*
 * routes.c - Firecracker's request parsing and responses
 * (src/firecracker/src/api_server/parsed_request.rs and request/ files).
 *
 * Runs on the API thread, like ParsedRequest::try_from: the path is split
 * on '/', the first token and the method select the parser, bodies are
 * deserialised (schema.c) and path ids checked before anything reaches the
 * VMM thread. RequestErrors are answered here with 400 and a
 * {"fault_message": ...} body; actions go to the VMM thread and their
 * outcome is converted like convert_to_response(): 204 for VmmData::Empty,
 * 200 with compact JSON for data, 400 (413 for the MMDS size limit) with the
 * VmmActionError text. Deprecated fields (machine-config cpu_template,
 * vsock_id, MMDS V1, snapshot mem_file_path) add "Deprecation: true".
 *
 * Match order matters and is kept: a GET with a body is refused before the
 * path is looked at, PUT/PATCH without a body get "Empty PUT request." for
 * any path, and unknown paths name only the first path token
 * ("Invalid request method and/or path: GET foo.").
 */
#include "standin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct req {
    const char *method;
    const char *body;
    size_t len;
    bool has_body;
    char *tok[8];
    int ntok;
    int next; /* path_tokens iterator */
    fsi_http_response *resp;
    fsi_action act;
    bool deprecation;
} req;

static void fault_response(fsi_http_response *r, int status, const char *msg)
{
    json_t *o = json_object();
    json_object_set_new(o, "fault_message", json_string(msg));
    r->status = status;
    r->body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
}

/* RequestError -> Response (logged like ApiServer::handle_request does). */
static int request_error(req *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int request_error(req *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = fsi_xvasprintf(fmt, ap);
    va_end(ap);
    LOGE(M_API, "%s", msg);
    fault_response(q->resp, 400, msg);
    free(msg);
    return -1;
}

static const char *next_token(req *q)
{
    return q->next < q->ntok ? q->tok[q->next++] : NULL;
}

/* serde_json::from_slice::<type>(body); NULL after answering on failure. */
static json_t *deserialize(req *q, const char *type, const char *group, const char *fails)
{
    json_error_t e;
    json_t *v = json_loadb(q->body, q->len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    char *msg =
        v ? (type ? fsi_schema_check(type, v) : NULL) : fsi_json_syntax_msg(&e, q->body, q->len);
    if (!msg)
        return v;
    if (group)
        fsi_metric_inc(group, fails);
    request_error(q, "An error occurred when deserializing the json body of a request: %s.", msg);
    free(msg);
    json_decref(v);
    return NULL;
}

static int action(req *q, fsi_act kind, json_t *body)
{
    q->act.kind = kind;
    q->act.body = body;
    return 0;
}

/* checked_id(): non-empty, alphanumeric or '_' (non-ASCII bytes pass as
 * Rust's char::is_alphanumeric would for letters). */
static int checked_id(req *q, const char *id)
{
    if (!id || !*id)
        return request_error(q, "The ID cannot be empty.");
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (!(*p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z') || *p >= 0x80))
            return request_error(
                q, "API Resource IDs can only contain alphanumeric characters and underscores.");
    return 0;
}

static const char *str_of(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* PUT/PATCH /drives|network-interfaces|pmem/{id}: the id must match the body's. */
static int device_with_id(req *q, fsi_act kind, const char *type, const char *idkey,
                          const char *group, const char *count, const char *fails, bool net)
{
    fsi_metric_inc(group, count);
    const char *id = next_token(q);
    if (checked_id(q, id) < 0) {
        fsi_metric_inc(group, fails);
        return -1;
    }
    json_t *v = deserialize(q, type, group, fails);
    if (!v)
        return -1;
    const char *bid = str_of(v, idkey);
    if (strcmp(id, bid)) {
        fsi_metric_inc(group, fails);
        if (net)
            request_error(q, "The id from the path [%s] does not match the id from the body [%s]!",
                          id, bid);
        else
            request_error(q, "The id from the path does not match the id from the body!");
        json_decref(v);
        return -1;
    }
    return action(q, kind, v);
}

static int simple_put(req *q, fsi_act kind, const char *type, const char *count, const char *fails)
{
    if (count)
        fsi_metric_inc("put_api_requests", count);
    json_t *v = deserialize(q, type, count ? "put_api_requests" : NULL, fails);
    return v ? action(q, kind, v) : -1;
}

static int get_balloon(req *q)
{
    const char *t = next_token(q);
    if (!t)
        return action(q, A_GET_BALLOON_CONFIG, NULL);
    if (!strcmp(t, "statistics"))
        return action(q, A_GET_BALLOON_STATS, NULL);
    if (!strcmp(t, "hinting")) {
        const char *t2 = next_token(q);
        if (t2 && !strcmp(t2, "status"))
            return action(q, A_GET_HINTING, NULL);
        return request_error(q, "Unrecognized GET request path `/hinting/%s`.", t2 ? t2 : "");
    }
    return request_error(q, "Unrecognized GET request path `%s`.", t);
}

static int patch_balloon(req *q)
{
    const char *t = next_token(q);
    if (t && !strcmp(t, "statistics") && q->has_body) {
        json_t *v = deserialize(q, "BalloonUpdateStatsConfig", NULL, NULL);
        return v ? action(q, A_UPDATE_BALLOON_STATS, v) : -1;
    }
    if (t && !strcmp(t, "hinting")) {
        const char *t2 = next_token(q);
        if (t2 && !strcmp(t2, "start")) {
            if (!q->has_body)
                return action(q, A_START_HINTING, NULL);
            json_t *v = deserialize(q, "StartHintingCmd", NULL, NULL);
            return v ? action(q, A_START_HINTING, v) : -1;
        }
        if (t2 && !strcmp(t2, "stop"))
            return action(q, A_STOP_HINTING, NULL);
        return request_error(q, "Unrecognized PATCH request path `/hinting/%s`.", t2 ? t2 : "");
    }
    if (!q->has_body)
        return request_error(q, "Empty PATCH request.");
    json_t *v = deserialize(q, "BalloonUpdateConfig", NULL, NULL);
    return v ? action(q, A_UPDATE_BALLOON, v) : -1;
}

static int put_machine_config(req *q)
{
    fsi_metric_inc("put_api_requests", "machine_cfg_count");
    json_t *v = deserialize(q, "MachineConfig", "put_api_requests", "machine_cfg_fails");
    if (!v)
        return -1;
    if (json_object_get(v, "cpu_template") && !json_is_null(json_object_get(v, "cpu_template"))) {
        fsi_metric_inc("deprecated_api", "deprecated_http_api_calls");
        q->deprecation = true;
        LOGW(M_API, "PUT /machine-config: cpu_template field is deprecated.");
    }
    return action(q, A_UPDATE_MACHINE_CONFIG, v);
}

static int patch_machine_config(req *q)
{
    fsi_metric_inc("patch_api_requests", "machine_cfg_count");
    json_t *v = deserialize(q, "MachineConfigUpdate", "patch_api_requests", "machine_cfg_fails");
    if (!v)
        return -1;
    bool empty = true;
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e)
    {
        empty = empty && json_is_null(e);
    }
    if (empty) {
        json_decref(v);
        return request_error(q, "Empty PATCH request.");
    }
    if (json_object_get(v, "cpu_template") && !json_is_null(json_object_get(v, "cpu_template"))) {
        fsi_metric_inc("deprecated_api", "deprecated_http_api_calls");
        q->deprecation = true;
        LOGW(M_API, "PATCH /machine-config: cpu_template field is deprecated.");
    }
    q->act.patch = true;
    return action(q, A_UPDATE_MACHINE_CONFIG, v);
}

static int put_actions(req *q)
{
    fsi_metric_inc("put_api_requests", "actions_count");
    json_t *v = deserialize(q, "ActionBody", "put_api_requests", "actions_fails");
    if (!v)
        return -1;
    const char *t = str_of(v, "action_type");
    fsi_act kind = !strcmp(t, "FlushMetrics")    ? A_FLUSH_METRICS
                   : !strcmp(t, "InstanceStart") ? A_START
                                                 : A_CTRL_ALT_DEL;
    json_decref(v);
    return action(q, kind, NULL);
}

static int put_mmds(req *q)
{
    fsi_metric_inc("put_api_requests", "mmds_count");
    const char *t = next_token(q);
    if (!t) {
        json_t *v = deserialize(q, NULL, "put_api_requests", "mmds_fails");
        return v ? action(q, A_PUT_MMDS, v) : -1;
    }
    if (!strcmp(t, "config")) {
        json_t *v = deserialize(q, "MmdsConfig", "put_api_requests", "mmds_fails");
        if (!v)
            return -1;
        const char *ver = str_of(v, "version");
        if (!ver || !strcmp(ver, "V1")) {
            fsi_metric_inc("deprecated_api", "deprecated_http_api_calls");
            q->deprecation = true;
            LOGW(M_API, "PUT /mmds/config: V1 is deprecated. Use V2 instead.");
        }
        return action(q, A_SET_MMDS_CONFIG, v);
    }
    fsi_metric_inc("put_api_requests", "mmds_fails");
    return request_error(q, "Unrecognized PUT request path `%s`.", t);
}

static int put_snapshot(req *q)
{
    const char *t = next_token(q);
    if (!t)
        return request_error(q, "Missing snapshot operation type.");
    if (!strcmp(t, "create")) {
        json_t *v = deserialize(q, "CreateSnapshotParams", NULL, NULL);
        return v ? action(q, A_CREATE_SNAPSHOT, v) : -1;
    }
    if (strcmp(t, "load"))
        return request_error(q, "Invalid request method and/or path: PUT /snapshot/%s.", t);
    json_t *v = deserialize(q, "LoadSnapshotConfig", NULL, NULL);
    if (!v)
        return -1;
    json_t *fp = json_object_get(v, "mem_file_path"), *mb = json_object_get(v, "mem_backend");
    bool has_fp = fp && !json_is_null(fp), has_mb = mb && !json_is_null(mb);
    const char *bad = has_fp && has_mb ? "too many fields: either `mem_backend` or "
                                         "`mem_file_path` exclusively is required"
                      : !has_fp && !has_mb
                          ? "missing field: either `mem_backend` or `mem_file_path` is required"
                          : NULL;
    if (bad) {
        json_decref(v);
        return request_error(
            q, "An error occurred when deserializing the json body of a request: %s.", bad);
    }
    if (has_fp || json_is_true(json_object_get(v, "enable_diff_snapshots"))) {
        fsi_metric_inc("deprecated_api", "deprecated_http_api_calls");
        q->deprecation = true;
        LOGW(M_API, "PUT /snapshot/load: mem_file_path and enable_diff_snapshots fields are "
                    "deprecated.");
    }
    return action(q, A_LOAD_SNAPSHOT, v);
}

static int put_vsock(req *q)
{
    if (simple_put(q, A_SET_VSOCK, "VsockDeviceConfig", "vsock_count", "vsock_fails") < 0)
        return -1;
    json_t *id = json_object_get(q->act.body, "vsock_id");
    if (id && !json_is_null(id)) {
        fsi_metric_inc("deprecated_api", "deprecated_http_api_calls");
        q->deprecation = true;
        LOGW(M_API, "PUT /vsock: vsock_id field is deprecated.");
    }
    return 0;
}

static int unplug(req *q, const char *kind)
{
    const char *id = next_token(q);
    if (checked_id(q, id) < 0)
        return -1;
    q->act.unplug_id = fsi_xstrdup(id);
    q->act.unplug_kind = kind;
    return action(q, A_HOT_UNPLUG, NULL);
}

static int route_get(req *q, const char *t0)
{
    if (!strcmp(t0, "")) {
        fsi_metric_inc("get_api_requests", "instance_info_count");
        return action(q, A_GET_INSTANCE_INFO, NULL);
    }
    if (!strcmp(t0, "balloon"))
        return get_balloon(q);
    if (!strcmp(t0, "version")) {
        fsi_metric_inc("get_api_requests", "vmm_version_count");
        return action(q, A_GET_VERSION, NULL);
    }
    if (!strcmp(t0, "vm")) {
        const char *t = next_token(q);
        if (t && !strcmp(t, "config"))
            return action(q, A_GET_FULL_VM_CONFIG, NULL);
        return 1;
    }
    if (!strcmp(t0, "machine-config")) {
        fsi_metric_inc("get_api_requests", "machine_cfg_count");
        return action(q, A_GET_MACHINE_CONFIG, NULL);
    }
    if (!strcmp(t0, "mmds")) {
        fsi_metric_inc("get_api_requests", "mmds_count");
        return action(q, A_GET_MMDS, NULL);
    }
    if (!strcmp(t0, "hotplug")) {
        const char *t = next_token(q);
        if (t && !strcmp(t, "memory")) {
            fsi_metric_inc("get_api_requests", "hotplug_memory_count");
            return action(q, A_GET_MEMORY_HOTPLUG, NULL);
        }
    }
    return 1; /* not matched */
}

static int route_put(req *q, const char *t0)
{
    static const char P[] = "put_api_requests";
    if (!strcmp(t0, "actions"))
        return put_actions(q);
    if (!strcmp(t0, "balloon"))
        return simple_put(q, A_SET_BALLOON, "BalloonDeviceConfig", NULL, NULL);
    if (!strcmp(t0, "boot-source"))
        return simple_put(q, A_CONFIGURE_BOOT_SOURCE, "BootSourceConfig", "boot_source_count",
                          "boot_source_fails");
    if (!strcmp(t0, "cpu-config"))
        return simple_put(q, A_PUT_CPU_CONFIG, "CustomCpuTemplate", "cpu_cfg_count",
                          "cpu_cfg_fails");
    if (!strcmp(t0, "drives"))
        return device_with_id(q, A_INSERT_BLOCK, "BlockDeviceConfig", "drive_id", P, "drive_count",
                              "drive_fails", false);
    if (!strcmp(t0, "pmem"))
        return device_with_id(q, A_INSERT_PMEM, "PmemConfig", "id", P, "pmem_count", "pmem_fails",
                              false);
    if (!strcmp(t0, "logger"))
        return simple_put(q, A_CONFIGURE_LOGGER, "LoggerConfig", "logger_count", "logger_fails");
    if (!strcmp(t0, "serial"))
        return simple_put(q, A_CONFIGURE_SERIAL, "SerialConfig", "serial_count", "serial_fails");
    if (!strcmp(t0, "machine-config"))
        return put_machine_config(q);
    if (!strcmp(t0, "metrics"))
        return simple_put(q, A_CONFIGURE_METRICS, "MetricsConfig", "metrics_count",
                          "metrics_fails");
    if (!strcmp(t0, "mmds"))
        return put_mmds(q);
    if (!strcmp(t0, "network-interfaces"))
        return device_with_id(q, A_INSERT_NET, "NetworkInterfaceConfig", "iface_id", P,
                              "network_count", "network_fails", true);
    if (!strcmp(t0, "snapshot"))
        return put_snapshot(q);
    if (!strcmp(t0, "vsock"))
        return put_vsock(q);
    if (!strcmp(t0, "entropy"))
        return simple_put(q, A_SET_ENTROPY, "EntropyDeviceConfig", NULL, NULL);
    if (!strcmp(t0, "hotplug")) {
        const char *t = next_token(q);
        if (t && !strcmp(t, "memory"))
            return simple_put(q, A_SET_MEMORY_HOTPLUG, "MemoryHotplugConfig",
                              "hotplug_memory_count", "hotplug_memory_fails");
    }
    return 1;
}

static int route_patch(req *q, const char *t0)
{
    static const char P[] = "patch_api_requests";
    if (!strcmp(t0, "balloon"))
        return patch_balloon(q);
    if (!q->has_body)
        return request_error(q, "Empty PATCH request.");
    if (!strcmp(t0, "drives"))
        return device_with_id(q, A_UPDATE_BLOCK, "BlockDeviceUpdateConfig", "drive_id", P,
                              "drive_count", "drive_fails", false);
    if (!strcmp(t0, "machine-config"))
        return patch_machine_config(q);
    if (!strcmp(t0, "mmds")) {
        fsi_metric_inc(P, "mmds_count");
        json_t *v = deserialize(q, NULL, P, "mmds_fails");
        return v ? action(q, A_PATCH_MMDS, v) : -1;
    }
    if (!strcmp(t0, "network-interfaces"))
        return device_with_id(q, A_UPDATE_NET, "NetworkInterfaceUpdateConfig", "iface_id", P,
                              "network_count", "network_fails", true);
    if (!strcmp(t0, "pmem"))
        return device_with_id(q, A_UPDATE_PMEM, "PmemDeviceUpdateConfig", "id", P, "pmem_count",
                              "pmem_fails", false);
    if (!strcmp(t0, "vm")) {
        json_t *v = deserialize(q, "Vm", NULL, NULL);
        if (!v)
            return -1;
        fsi_act kind = !strcmp(str_of(v, "state"), "Paused") ? A_PAUSE : A_RESUME;
        json_decref(v);
        return action(q, kind, NULL);
    }
    if (!strcmp(t0, "hotplug")) {
        const char *t = next_token(q);
        if (t && !strcmp(t, "memory")) {
            fsi_metric_inc(P, "hotplug_memory_count");
            json_t *v = deserialize(q, "MemoryHotplugSizeUpdate", P, "hotplug_memory_fails");
            return v ? action(q, A_UPDATE_MEMORY_HOTPLUG, v) : -1;
        }
    }
    return 1;
}

/* The whole match of ParsedRequest::try_from. 0: action in q->act, -1 answered, 1 no route. */
static int route(req *q)
{
    const char *t0 = q->ntok ? q->tok[0] : "";
    q->next = 1;
    const char *m = q->method;
    if (!strcmp(m, "GET")) {
        if (q->has_body)
            return request_error(q, "GET request cannot have a body.");
        return route_get(q, t0);
    }
    if (!strcmp(m, "PUT")) {
        if (!q->has_body)
            return request_error(q, "Empty PUT request.");
        return route_put(q, t0);
    }
    if (!strcmp(m, "PATCH"))
        return route_patch(q, t0);
    /* DELETE: with a body Firecracker answers this, whatever the path. */
    if (q->has_body)
        return request_error(q, "Empty Delete request.");
    if (!strcmp(t0, "drives") || !strcmp(t0, "pmem") || !strcmp(t0, "network-interfaces"))
        return unplug(q, !strcmp(t0, "drives") ? "drives"
                         : !strcmp(t0, "pmem") ? "pmem"
                                               : "network-interfaces");
    return 1;
}

/* split_terminator('/') after trim_start_matches('/'): a trailing '/' adds no token. */
static void tokenize(req *q, const char *path)
{
    while (*path == '/')
        path++;
    const char *p = path;
    while (*p && q->ntok < 8) {
        size_t n = strcspn(p, "/");
        q->tok[q->ntok++] = strndup(p, n);
        if (!p[n])
            break;
        p += n + 1;
    }
}

static void describe(const char *method, const char *path, const char *body, size_t len,
                     bool has_body)
{
    const char *m = !strcmp(method, "GET")     ? "Get"
                    : !strcmp(method, "PUT")   ? "Put"
                    : !strcmp(method, "PATCH") ? "Patch"
                                               : "Delete";
    char *p = fsi_debug_str(path);
    if (!has_body || !strcmp(path, "/mmds")) {
        LOGI(M_API, "The API server received a %s request on %s.", m, p);
    } else {
        char *copy = strndup(body, len);
        char *b = fsi_debug_str(copy);
        LOGI(M_API, "The API server received a %s request on %s with body %s.", m, p, b);
        free(b);
        free(copy);
    }
    free(p);
}

void fsi_route(const char *method, const char *path, const char *body, size_t len, bool has_body,
               fsi_http_response *resp)
{
    req q = {.method = method, .body = body, .len = len, .has_body = has_body, .resp = resp};
    describe(method, path, body, len, has_body);
    tokenize(&q, path);
    int rc = route(&q);
    if (rc > 0) {
        const char *t0 = q.ntok ? q.tok[0] : "";
        request_error(&q, "Invalid request method and/or path: %s %s.", method, t0);
    } else if (rc == 0) {
        fsi_outcome o = {0};
        fsi_vmm_call(&q.act, &o);
        if (o.status < 0) {
            resp->status = -1;
        } else if (o.fault) {
            LOGE(M_API, "Received Error. Status code: %d %s. Message: %s", o.status,
                 o.status == 413 ? "Payload too large" : "Bad Request", o.fault);
            fault_response(resp, o.status, o.fault);
            free(o.fault);
        } else if (o.status == 204) {
            LOGI(M_API, "The request was executed successfully. Status code: 204 No Content.");
            resp->status = 204;
        } else {
            LOGI(M_API, "The request was executed successfully. Status code: 200 OK.");
            resp->status = 200;
            resp->body = json_dumps(o.data, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
            json_decref(o.data);
        }
        resp->deprecation = q.deprecation;
    }
    json_decref(q.act.body);
    free(q.act.unplug_id);
    for (int i = 0; i < q.ntok; i++)
        free(q.tok[i]);
}
