/*
 * observe_vm.c - per-VM metrics read from each VMM's counters (Cloud
 * Hypervisor's GET /api/v1/vm.counters: {device: {counter: value}}).
 *
 * Opt-in (UNKEY_CHCP_OTEL_VM_METRICS), because every VM adds series: a label
 * chcp_vm_id per VM times its devices times the counters. Only running and
 * paused VMs are read (others have no counters), at most
 * UNKEY_CHCP_OTEL_VM_METRICS_MAX_VMS of them (the first by id; the rest are
 * counted in chcp_vm_metrics_vms{state="skipped"} and logged once), every
 * UNKEY_CHCP_OTEL_VM_METRICS_INTERVAL_MS. A VM that is deleted, stops or
 * stops answering loses its series at the next read, so a host that churns
 * VMs does not accumulate dead series.
 *
 * Known counters become semantic metrics (disk and network bytes, disk
 * operations, network packets) with a direction label; any other counter a
 * VMM reports goes to chcp_vm_vmm_counter_total{counter=...}, so nothing is
 * dropped silently. The values are the VMM's own cumulative counts; their
 * start time is the VMM process's start.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "daemon/observe_internal.h"

typedef struct vm_counters {
    char id[VM_ID_MAX + 1];
    json_t *counters; /* the last answer */
    uint64_t start_ns;
    unsigned cycle; /* the read that produced it */
} vm_counters;

struct observe_vm_metrics {
    observe *o;
    uv_timer_t timer;
    unsigned cycle;
    vm_counters *vms;
    size_t n, cap;
    size_t skipped; /* over the cap at the last read */
    bool cap_logged;
    bool stopping;
    unsigned in_flight;
    tm_metric *disk_io, *disk_ops, *net_io, *net_packets, *other, *covered;
};

typedef struct counters_read {
    observe_vm_metrics *vm;
    char id[VM_ID_MAX + 1];
    unsigned cycle;
    uint64_t start_ns;
} counters_read;

/* ---- the cache ------------------------------------------------------------- */

static vm_counters *cache_find(observe_vm_metrics *vm, const char *id)
{
    for (size_t i = 0; i < vm->n; i++)
        if (strcmp(vm->vms[i].id, id) == 0)
            return &vm->vms[i];
    return NULL;
}

static void cache_remove(observe_vm_metrics *vm, vm_counters *c)
{
    json_decref(c->counters);
    *c = vm->vms[--vm->n];
}

/* Unix ns at which a VMM started: boot time + its start in clock ticks. */
static uint64_t vmm_start_ns(const vm_record *r)
{
    static uint64_t boot_ns;
    if (!boot_ns) {
        FILE *f = fopen("/proc/stat", "re");
        char line[256];
        unsigned long long btime = 0;
        while (f && fgets(line, sizeof(line), f) && !btime)
            if (str_has_prefix(line, "btime "))
                btime = strtoull(line + 6, NULL, 10);
        if (f)
            fclose(f);
        boot_ns = btime * 1000000000ull;
    }
    if (!r->vmm_start_time || !boot_ns)
        return time_real_ns(); /* attach mode: from when chcp first read it */
    long hz = sysconf(_SC_CLK_TCK);
    return boot_ns + r->vmm_start_time * (1000000000ull / (uint64_t)(hz > 0 ? hz : 100));
}

static void on_counters(void *ud, chcp_error *err, const vmb_reply *reply)
{
    counters_read *rd = ud;
    observe_vm_metrics *vm = rd->vm;
    vm->in_flight--;
    json_t *j = NULL;
    if (!err && !vm->stopping && reply && reply->body)
        j = json_loadb(reply->body, reply->body_len, 0, NULL);
    vm_counters *c = vm->stopping ? NULL : cache_find(vm, rd->id);
    if (json_is_object(j)) {
        if (!c) {
            if (vm->n == vm->cap) {
                vm->cap = vm->cap ? vm->cap * 2 : 16;
                vm->vms = xrealloc(vm->vms, vm->cap * sizeof(*vm->vms));
            }
            c = &vm->vms[vm->n++];
            memset(c, 0, sizeof(*c));
            snprintf(c->id, sizeof(c->id), "%s", rd->id);
            c->start_ns = rd->start_ns;
        }
        json_decref(c->counters);
        c->counters = json_incref(j);
        c->cycle = rd->cycle;
    } else if (c) {
        cache_remove(vm, c); /* no answer: no series rather than stale ones */
    }
    json_decref(j);
    error_free(err);
    free(rd);
}

/* One read: every running or paused VM up to the cap. */
static void on_timer(uv_timer_t *t)
{
    observe_vm_metrics *vm = t->data;
    observe *o = vm->o;
    uint32_t cap = o->cfg->otel.vm_metrics_max_vms;
    vm_state states[] = {VM_RUNNING, VM_PAUSED};
    vm_list_filter f = {.states = states, .n_states = 2};
    const vm_record **recs = xcalloc(cap, sizeof(*recs));
    bool more = false;
    size_t n = vm_manager_list(o->vms, &f, NULL, cap, recs, &more);
    size_t total =
        vm_manager_count_state(o->vms, VM_RUNNING) + vm_manager_count_state(o->vms, VM_PAUSED);
    vm->skipped = total > n ? total - n : 0;
    if (vm->skipped && !vm->cap_logged) {
        log_warn("per-VM metrics cover %u VMs (UNKEY_CHCP_OTEL_VM_METRICS_MAX_VMS); %zu more "
                 "running VM(s) have none (logged once)",
                 cap, vm->skipped);
        vm->cap_logged = true;
    }
    vm->cycle++;
    /* VMs no longer listed (gone, stopped, over the cap) lose their series. */
    for (size_t i = 0; i < vm->n;) {
        bool listed = false;
        for (size_t k = 0; k < n && !listed; k++)
            listed = strcmp(recs[k]->id, vm->vms[i].id) == 0;
        if (listed)
            i++;
        else
            cache_remove(vm, &vm->vms[i]);
    }
    for (size_t i = 0; i < n; i++) {
        counters_read *rd = xcalloc(1, sizeof(*rd));
        rd->vm = vm;
        rd->cycle = vm->cycle;
        rd->start_ns = vmm_start_ns(recs[i]);
        snprintf(rd->id, sizeof(rd->id), "%s", recs[i]->id);
        chcp_error *err = NULL;
        if (vm_manager_vmm_counters(o->vms, rd->id, on_counters, rd, &err) < 0) {
            /* Busy with an operation: keep what the last read said. */
            error_free(err);
            free(rd);
            continue;
        }
        vm->in_flight++;
    }
    free(recs);
}

/* ---- exposing them ---------------------------------------------------------- */

typedef struct known_counter {
    const char *name;
    int metric; /* 0 disk io, 1 disk ops, 2 net io, 3 net packets */
    const char *direction;
} known_counter;

static const known_counter known[] = {
    {"read_bytes", 0, "read"},   {"write_bytes", 0, "write"},  {"read_ops", 1, "read"},
    {"write_ops", 1, "write"},   {"rx_bytes", 2, "receive"},   {"tx_bytes", 2, "transmit"},
    {"rx_frames", 3, "receive"}, {"tx_frames", 3, "transmit"},
};

static void expose_one(observe_vm_metrics *vm, const vm_counters *c)
{
    tm_metric *by_kind[] = {vm->disk_io, vm->disk_ops, vm->net_io, vm->net_packets};
    const char *device;
    json_t *counters;
    json_object_foreach(c->counters, device, counters)
    {
        const char *name;
        json_t *value;
        json_object_foreach(counters, name, value)
        {
            if (!json_is_integer(value) || json_integer_value(value) < 0)
                continue;
            double v = (double)json_integer_value(value);
            const known_counter *k = NULL;
            for (size_t i = 0; i < ARRAY_SIZE(known) && !k; i++)
                k = strcmp(known[i].name, name) == 0 ? &known[i] : NULL;
            if (k) {
                const char *labels[] = {c->id, device, k->direction, NULL};
                tm_set_since(by_kind[k->metric], labels, v, c->start_ns);
            } else {
                const char *labels[] = {c->id, device, name, NULL};
                tm_set_since(vm->other, labels, v, c->start_ns);
            }
        }
    }
}

/* Before every scrape or push: the series are exactly the cached answers. */
static void collect(tm_registry *r, void *ud)
{
    observe_vm_metrics *vm = ud;
    tm_metric *all[] = {vm->disk_io, vm->disk_ops, vm->net_io, vm->net_packets, vm->other};
    for (size_t i = 0; i < ARRAY_SIZE(all); i++)
        tm_metric_clear(all[i]);
    for (size_t i = 0; i < vm->n; i++)
        expose_one(vm, &vm->vms[i]);
    const char *collected[] = {"collected", NULL}, *skipped[] = {"skipped", NULL};
    tm_set(vm->covered, collected, (double)vm->n);
    tm_set(vm->covered, skipped, (double)vm->skipped);
}

static void register_metrics(observe_vm_metrics *vm, tm_registry *r)
{
    const char *disk[] = {"chcp.vm_id", "chcp.vm.device", "disk.io.direction", NULL};
    const char *net[] = {"chcp.vm_id", "chcp.vm.device", "network.io.direction", NULL};
    const char *other[] = {"chcp.vm_id", "chcp.vm.device", "counter", NULL};
    const char *state[] = {"state", NULL};
    vm->disk_io = tm_metric_new(r, TM_COUNTER, "chcp.vm.disk.io", "By",
                                "Bytes a VM's disk read and wrote (VMM counters).", disk, NULL, 0);
    vm->disk_ops = tm_metric_new(r, TM_COUNTER, "chcp.vm.disk.operations", "{operation}",
                                 "Disk operations of a VM (VMM counters).", disk, NULL, 0);
    vm->net_io = tm_metric_new(r, TM_COUNTER, "chcp.vm.network.io", "By",
                               "Bytes a VM's network device received and sent (VMM counters).", net,
                               NULL, 0);
    vm->net_packets = tm_metric_new(r, TM_COUNTER, "chcp.vm.network.packets", "{packet}",
                                    "Frames a VM's network device received and sent (VMM "
                                    "counters).",
                                    net, NULL, 0);
    vm->other = tm_metric_new(r, TM_COUNTER, "chcp.vm.vmm.counter", "",
                              "Other counters a VMM reports per device.", other, NULL, 0);
    vm->covered = tm_metric_new(r, TM_GAUGE, "chcp.vm_metrics.vms", "{vm}",
                                "VMs with per-VM metrics (collected) and over the cap (skipped).",
                                state, NULL, 0);
    tm_registry_on_collect(r, collect, vm);
}

observe_vm_metrics *observe_vm_metrics_start(observe *o)
{
    observe_vm_metrics *vm = xcalloc(1, sizeof(*vm));
    vm->o = o;
    register_metrics(vm, o->reg);
    uv_timer_init(o->loop, &vm->timer);
    vm->timer.data = vm;
    uint64_t every = o->cfg->otel.vm_metrics_interval_ms;
    uv_timer_start(&vm->timer, on_timer, every, every);
    uv_unref((uv_handle_t *)&vm->timer);
    return vm;
}

static void timer_closed(uv_handle_t *h)
{
    observe_vm_metrics *vm = h->data;
    observe_piece_done(vm->o);
}

void observe_vm_metrics_stop(observe_vm_metrics *vm)
{
    vm->stopping = true;
    uv_timer_stop(&vm->timer);
    vm->o->pending++;
    uv_close((uv_handle_t *)&vm->timer, timer_closed);
}

void observe_vm_metrics_free(observe_vm_metrics *vm)
{
    if (!vm)
        return;
    while (vm->n)
        cache_remove(vm, &vm->vms[0]);
    free(vm->vms);
    free(vm);
}
