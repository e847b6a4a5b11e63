/*
 * protometa-gen.c - build-time generator of the protometa side tables.
 *
 * protobuf-c's descriptors do not record json_name, the map-entry flag,
 * the declaration order of fields or method options, all of which the proto3
 * JSON mapping and Connect GET need. protoc does record them in a
 * FileDescriptorSet (`protoc --include_imports --descriptor_set_out=x.fds`),
 * so this tool reads that set with protobuf-c's own code for descriptor.proto
 * and prints a C file defining one `const protometa_table <name>` that points
 * at protobuf-c's generated descriptors (see src/rpc/protojson.h).
 *
 * With --files it also embeds every file of the set (its serialized
 * FileDescriptorProto, its dependencies and the symbols it defines) for the
 * server reflection service.
 *
 * Usage: protometa-gen --name <symbol> [--files] <file.fds> > out.c
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"

typedef Google__Protobuf__FileDescriptorProto FileProto;
typedef Google__Protobuf__DescriptorProto MsgProto;
typedef Google__Protobuf__FieldDescriptorProto FieldProto;

#define DESCRIPTOR_PROTO "google/protobuf/descriptor.proto"

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "protometa-gen: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

static void *xalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p)
        die("%s", "out of memory");
    return p;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open %s", path);
    size_t cap = 1 << 16, n = 0;
    uint8_t *data = xalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            data = realloc(data, cap);
            if (!data)
                die("%s", "out of memory");
        }
        size_t r = fread(data + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    if (ferror(f))
        die("cannot read %s", path);
    fclose(f);
    *len = n;
    return data;
}

/* protoc-c's CamelToLower: "FieldMask" -> "field_mask", "GetVMInfo" -> "get_vminfo". */
static void append_camel_to_lower(char *out, size_t cap, const char *name)
{
    size_t n = strlen(out);
    bool was_upper = false;
    for (size_t i = 0; name[i] && n + 2 < cap; i++) {
        unsigned char c = (unsigned char)name[i];
        if (isupper(c)) {
            if (i > 0 && !was_upper)
                out[n++] = '_';
            out[n++] = (char)tolower(c);
            was_upper = true;
        } else {
            out[n++] = (char)c;
            was_upper = false;
        }
    }
    out[n] = '\0';
}

/* protoc-c's FullNameToLower applied to "pkg.Outer.Inner" + "__descriptor". */
static void c_descriptor_name(char *out, size_t cap, const char *full_name)
{
    out[0] = '\0';
    const char *p = full_name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len > 0) {
            char piece[256];
            if (len >= sizeof(piece))
                die("name too long: %s", full_name);
            memcpy(piece, p, len);
            piece[len] = '\0';
            if (out[0] && strlen(out) + 2 < cap)
                strcat(out, "__");
            append_camel_to_lower(out, cap, piece);
        }
        p += len + (dot ? 1 : 0);
    }
    if (strlen(out) + sizeof("__descriptor") >= cap)
        die("name too long: %s", full_name);
    strcat(out, "__descriptor");
}

/* Print a C string literal. */
static void print_cstr(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(o, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(o, "\\%03o", c);
        else
            fputc(c, o);
    }
    fputc('"', o);
}

/* protoc's default json_name, for descriptor sets that lack one. */
static char *default_json_name(const char *name)
{
    char *out = xalloc(strlen(name) + 1);
    size_t n = 0;
    bool upper_next = false;
    for (; *name; name++) {
        if (*name == '_') {
            upper_next = true;
        } else {
            out[n++] = upper_next ? (char)toupper((unsigned char)*name) : *name;
            upper_next = false;
        }
    }
    return out;
}

/* ---- which files to emit ------------------------------------------------ */

static bool name_defined_in(const MsgProto *m, const char *prefix, const char *full)
{
    size_t plen = strlen(prefix), nlen = strlen(m->name);
    if (strncmp(full, prefix, plen) != 0 || strncmp(full + plen, m->name, nlen) != 0)
        return false;
    const char *rest = full + plen + nlen;
    if (*rest == '\0')
        return true;
    if (*rest != '.')
        return false;
    char sub[1024];
    snprintf(sub, sizeof(sub), "%.*s.", (int)(plen + nlen), full);
    for (size_t i = 0; i < m->n_nested_type; i++)
        if (name_defined_in(m->nested_type[i], sub, full))
            return true;
    for (size_t i = 0; i < m->n_enum_type; i++)
        if (strcmp(rest + 1, m->enum_type[i]->name) == 0)
            return true;
    return false;
}

/* Does `file` define the type ".pkg.Name" (a message, nested message or enum)? */
static bool file_defines(const FileProto *file, const char *type_name)
{
    char prefix[512];
    snprintf(prefix, sizeof(prefix), ".%s%s", file->package ? file->package : "",
             file->package && file->package[0] ? "." : "");
    for (size_t i = 0; i < file->n_message_type; i++)
        if (name_defined_in(file->message_type[i], prefix, type_name))
            return true;
    size_t plen = strlen(prefix);
    if (strncmp(type_name, prefix, plen) == 0)
        for (size_t i = 0; i < file->n_enum_type; i++)
            if (strcmp(type_name + plen, file->enum_type[i]->name) == 0)
                return true;
    return false;
}

static bool message_references(const MsgProto *m, const FileProto *target)
{
    for (size_t i = 0; i < m->n_field; i++)
        if (m->field[i]->type_name && file_defines(target, m->field[i]->type_name))
            return true;
    for (size_t i = 0; i < m->n_nested_type; i++)
        if (message_references(m->nested_type[i], target))
            return true;
    return false;
}

/*
 * descriptor.proto is in the set whenever a file declares custom options, but
 * its protobuf-c code is only linked into binaries whose messages use it.
 */
static bool file_wanted(const Google__Protobuf__FileDescriptorSet *set, const FileProto *file)
{
    if (strcmp(file->name, DESCRIPTOR_PROTO) != 0)
        return true;
    for (size_t i = 0; i < set->n_file; i++) {
        const FileProto *other = set->file[i];
        if (other == file)
            continue;
        for (size_t j = 0; j < other->n_message_type; j++)
            if (message_references(other->message_type[j], file))
                return true;
        for (size_t j = 0; j < other->n_service; j++)
            for (size_t k = 0; k < other->service[j]->n_method; k++) {
                const Google__Protobuf__MethodDescriptorProto *m = other->service[j]->method[k];
                if ((m->input_type && file_defines(file, m->input_type)) ||
                    (m->output_type && file_defines(file, m->output_type)))
                    return true;
            }
    }
    return false;
}

/* ---- emitting ------------------------------------------------------------- */

typedef struct gen {
    FILE *out;
    unsigned n_messages;
    /* The table rows, collected while the arrays are printed. */
    char **rows;
    size_t n_rows, cap_rows;
} gen;

static void add_row(gen *g, char *row)
{
    if (g->n_rows == g->cap_rows) {
        g->cap_rows = g->cap_rows ? g->cap_rows * 2 : 64;
        g->rows = realloc(g->rows, g->cap_rows * sizeof(*g->rows));
        if (!g->rows)
            die("%s", "out of memory");
    }
    g->rows[g->n_rows++] = row;
}

static int cmp_field_number(const void *a, const void *b)
{
    const FieldProto *x = *(const FieldProto *const *)a, *y = *(const FieldProto *const *)b;
    return (x->number > y->number) - (x->number < y->number);
}

static void emit_message(gen *g, const MsgProto *m, const char *scope)
{
    char full[1024];
    snprintf(full, sizeof(full), "%s%s%s", scope, scope[0] ? "." : "", m->name);
    unsigned id = g->n_messages++;

    /* protobuf-c lays out descriptor->fields sorted by field number. */
    size_t n = m->n_field;
    FieldProto **sorted = xalloc(n * sizeof(*sorted));
    memcpy(sorted, m->field, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_field_number);

    bool has_json = n > 0, reordered = false;
    if (has_json) {
        fprintf(g->out, "static const char *const pm_json_%u[] = {", id);
        for (size_t i = 0; i < n; i++) {
            char *fallback = NULL;
            const char *jn = sorted[i]->json_name;
            if (!jn || !jn[0])
                jn = fallback = default_json_name(sorted[i]->name);
            /* The JSON encoder writes names verbatim, so keep them plain. */
            for (const char *c = jn; *c; c++)
                if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
                    die("json_name needs escaping: %s", jn);
            fputs(i ? ", " : "", g->out);
            print_cstr(g->out, jn);
            free(fallback);
        }
        fputs("};\n", g->out);
        for (size_t i = 0; i < n; i++)
            if (m->field[i] != sorted[i])
                reordered = true;
    }
    if (reordered) {
        /* Declaration order, as indexes into descriptor->fields. */
        fprintf(g->out, "static const unsigned pm_order_%u[] = {", id);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                if (sorted[j] == m->field[i])
                    fprintf(g->out, "%s%zu", i ? ", " : "", j);
        fputs("};\n", g->out);
    }
    free(sorted);

    char cname[1200];
    c_descriptor_name(cname, sizeof(cname), full);
    bool map_entry = m->options && m->options->has_map_entry && m->options->map_entry;
    char *row = xalloc(4096);
    char json_ref[32] = "NULL", order_ref[32] = "NULL";
    if (has_json)
        snprintf(json_ref, sizeof(json_ref), "pm_json_%u", id);
    if (reordered)
        snprintf(order_ref, sizeof(order_ref), "pm_order_%u", id);
    snprintf(row, 4096, "    {&%s, %s, %s, %s}, /* %s */", cname, json_ref,
             map_entry ? "true" : "false", order_ref, full);
    add_row(g, row);

    for (size_t i = 0; i < m->n_nested_type; i++)
        emit_message(g, m->nested_type[i], full);
}

/* ---- embedded files (reflection) ---------------------------------------- */

typedef struct symlist {
    char **v;
    size_t n, cap;
} symlist;

static void sym_add(symlist *l, const char *prefix, const char *name)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 32;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (!l->v)
            die("%s", "out of memory");
    }
    size_t len = strlen(prefix) + strlen(name) + 2;
    char *full = xalloc(len);
    snprintf(full, len, "%s%s%s", prefix, prefix[0] ? "." : "", name);
    l->v[l->n++] = full;
}

static void message_symbols(symlist *l, const char *prefix, const MsgProto *m)
{
    sym_add(l, prefix, m->name);
    const char *full = l->v[l->n - 1];
    for (size_t i = 0; i < m->n_nested_type; i++)
        message_symbols(l, full, m->nested_type[i]);
    for (size_t i = 0; i < m->n_enum_type; i++)
        sym_add(l, full, m->enum_type[i]->name);
}

static void file_symbols(symlist *l, const FileProto *f)
{
    const char *pkg = f->package ? f->package : "";
    for (size_t i = 0; i < f->n_message_type; i++)
        message_symbols(l, pkg, f->message_type[i]);
    for (size_t i = 0; i < f->n_enum_type; i++)
        sym_add(l, pkg, f->enum_type[i]->name);
    for (size_t i = 0; i < f->n_service; i++) {
        sym_add(l, pkg, f->service[i]->name);
        char *svc = l->v[l->n - 1];
        for (size_t j = 0; j < f->service[i]->n_method; j++)
            sym_add(l, svc, f->service[i]->method[j]->name);
    }
}

static void emit_strings(FILE *o, const char *name, char *const *v, size_t n)
{
    if (!n)
        return;
    fprintf(o, "static const char *const %s[] = {\n", name);
    for (size_t i = 0; i < n; i++) {
        fputs("    ", o);
        print_cstr(o, v[i]);
        fputs(",\n", o);
    }
    fputs("};\n", o);
}

/* Every file of the set: bytes, dependencies, symbols; then the table. */
static void emit_files(FILE *o, const Google__Protobuf__FileDescriptorSet *set)
{
    for (size_t i = 0; i < set->n_file; i++) {
        const FileProto *f = set->file[i];
        size_t len = protobuf_c_message_get_packed_size(&f->base);
        uint8_t *bytes = xalloc(len);
        protobuf_c_message_pack(&f->base, bytes);
        fprintf(o, "static const uint8_t pm_file_%zu[] = {", i);
        for (size_t j = 0; j < len; j++)
            fprintf(o, "%s0x%02x,", j % 16 ? " " : "\n    ", bytes[j]);
        fputs("\n};\n", o);
        free(bytes);
        char name[64];
        snprintf(name, sizeof(name), "pm_file_%zu_deps", i);
        emit_strings(o, name, f->dependency, f->n_dependency);
        symlist syms = {0};
        file_symbols(&syms, f);
        snprintf(name, sizeof(name), "pm_file_%zu_syms", i);
        emit_strings(o, name, syms.v, syms.n);
        for (size_t j = 0; j < syms.n; j++)
            free(syms.v[j]);
        free(syms.v);
    }
    fputs("\nstatic const protometa_file pm_files[] = {\n", o);
    for (size_t i = 0; i < set->n_file; i++) {
        const FileProto *f = set->file[i];
        symlist syms = {0};
        file_symbols(&syms, f);
        fputs("    {", o);
        print_cstr(o, f->name);
        fprintf(o, ", pm_file_%zu, sizeof(pm_file_%zu), ", i, i);
        if (f->n_dependency)
            fprintf(o, "pm_file_%zu_deps, %zu, ", i, f->n_dependency);
        else
            fputs("NULL, 0, ", o);
        if (syms.n)
            fprintf(o, "pm_file_%zu_syms, %zu},\n", i, syms.n);
        else
            fputs("NULL, 0},\n", o);
        for (size_t j = 0; j < syms.n; j++)
            free(syms.v[j]);
        free(syms.v);
    }
    fputs("};\n\n", o);
}

static const char *idempotency_name(const Google__Protobuf__MethodOptions *o)
{
    if (!o || !o->has_idempotency_level)
        return "PROTOMETA_IDEMPOTENCY_UNKNOWN";
    switch (o->idempotency_level) {
    case GOOGLE__PROTOBUF__METHOD_OPTIONS__IDEMPOTENCY_LEVEL__NO_SIDE_EFFECTS:
        return "PROTOMETA_NO_SIDE_EFFECTS";
    case GOOGLE__PROTOBUF__METHOD_OPTIONS__IDEMPOTENCY_LEVEL__IDEMPOTENT:
        return "PROTOMETA_IDEMPOTENT";
    default:
        return "PROTOMETA_IDEMPOTENCY_UNKNOWN";
    }
}

static void emit_header_include(FILE *o, const char *proto_name)
{
    size_t len = strlen(proto_name);
    const char *ext = ".proto";
    size_t elen = strlen(ext);
    if (len > elen && strcmp(proto_name + len - elen, ext) == 0)
        len -= elen;
    fprintf(o, "#include \"%.*s.pb-c.h\"\n", (int)len, proto_name);
}

int main(int argc, char **argv)
{
    const char *name = NULL, *path = NULL;
    bool files = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--files") == 0)
            files = true;
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else
            die("usage: protometa-gen --name <symbol> [--files] <file.fds> (bad argument %s)",
                argv[i]);
    }
    if (!name || !path)
        die("%s", "usage: protometa-gen --name <symbol> [--files] <file.fds>");
    for (const char *p = name; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_') || isdigit((unsigned char)name[0]))
            die("invalid C symbol %s", name);

    size_t len;
    uint8_t *data = read_file(path, &len);
    Google__Protobuf__FileDescriptorSet *set =
        google__protobuf__file_descriptor_set__unpack(NULL, len, data);
    if (!set)
        die("%s is not a FileDescriptorSet", path);

    FILE *o = stdout;
    gen g = {.out = o};
    fprintf(o, "/* Generated by tools/protometa-gen from %s. DO NOT EDIT. */\n", path);
    fputs("#include <stdbool.h>\n\n#include \"rpc/protojson.h\"\n", o);
    for (size_t i = 0; i < set->n_file; i++)
        if (file_wanted(set, set->file[i]))
            emit_header_include(o, set->file[i]->name);
    fputc('\n', o);

    size_t n_methods = 0;
    for (size_t i = 0; i < set->n_file; i++) {
        const FileProto *f = set->file[i];
        if (!file_wanted(set, f))
            continue;
        if (f->syntax && strcmp(f->syntax, "proto3") != 0 && strcmp(f->syntax, "proto2") != 0)
            die("unsupported syntax in %s", f->name);
        for (size_t j = 0; j < f->n_message_type; j++)
            emit_message(&g, f->message_type[j], f->package ? f->package : "");
        for (size_t j = 0; j < f->n_service; j++)
            n_methods += f->service[j]->n_method;
    }

    fputs("\n", o);
    if (g.n_rows) {
        fputs("static const protometa_message pm_messages[] = {\n", o);
        for (size_t i = 0; i < g.n_rows; i++) {
            fprintf(o, "%s\n", g.rows[i]);
            free(g.rows[i]);
        }
        fputs("};\n\n", o);
    }
    if (n_methods) {
        fputs("static const protometa_method pm_methods[] = {\n", o);
        for (size_t i = 0; i < set->n_file; i++) {
            const FileProto *f = set->file[i];
            if (!file_wanted(set, f))
                continue;
            for (size_t j = 0; j < f->n_service; j++) {
                const Google__Protobuf__ServiceDescriptorProto *s = f->service[j];
                char svc[1024];
                snprintf(svc, sizeof(svc), "%s%s%s", f->package ? f->package : "",
                         f->package && f->package[0] ? "." : "", s->name);
                for (size_t k = 0; k < s->n_method; k++) {
                    fputs("    {", o);
                    print_cstr(o, svc);
                    fputs(", ", o);
                    print_cstr(o, s->method[k]->name);
                    const Google__Protobuf__MethodDescriptorProto *md = s->method[k];
                    fprintf(o, ", %s, %s, %s},\n", idempotency_name(md->options),
                            md->has_client_streaming && md->client_streaming ? "true" : "false",
                            md->has_server_streaming && md->server_streaming ? "true" : "false");
                }
            }
        }
        fputs("};\n\n", o);
    }
    if (files)
        emit_files(o, set);
    fprintf(o, "const protometa_table %s = {%s, %zu, %s, %zu, %s, %zu};\n", name,
            g.n_rows ? "pm_messages" : "NULL", g.n_rows, n_methods ? "pm_methods" : "NULL",
            n_methods, files ? "pm_files" : "NULL", files ? set->n_file : 0);

    free(g.rows);
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    free(data);
    if (fflush(o) != 0 || ferror(o)) {
        fprintf(stderr, "protometa-gen: write error: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}
