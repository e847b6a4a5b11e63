/*
 * yaml.c - a YAML document (libyaml) as a jansson tree, so YAML and JSON VM
 * specs take the same path through the schema check (spec.c).
 *
 * Scalars stay strings: whether `2`, `true` or `1G` is a number, a boolean or
 * a size is decided by the field it lands in, not by YAML's guessing, so a
 * disk serial `12345` or a cmdline `on` stays the string it was written as.
 * Only the plain scalars ~, null and the empty value become JSON null. Keys
 * must be unique scalars; one document per file. Aliases are followed, with
 * limits on depth and on the number of nodes produced, so a small file cannot
 * expand into gigabytes ("billion laughs").
 */
#include "cli/cli.h"

#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_NODES 100000

typedef struct converter {
    yaml_document_t *doc;
    const char *name;
    size_t produced;
    chcp_error **err;
} converter;

static int node_error(converter *cv, const yaml_node_t *node, const char *what)
{
    return error_set(cv->err, CHCP_INVALID_ARGUMENT, "%s:%zu:%zu: %s", cv->name,
                     node->start_mark.line + 1, node->start_mark.column + 1, what);
}

static bool is_null(const yaml_node_t *n)
{
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static json_t *convert(converter *cv, yaml_node_t *node, int depth)
{
    if (depth > MAX_DEPTH) {
        node_error(cv, node, "nested too deeply");
        return NULL;
    }
    if (++cv->produced > MAX_NODES) {
        node_error(cv, node, "document too large (aliases expanding?)");
        return NULL;
    }
    switch (node->type) {
    case YAML_SCALAR_NODE:
        if (is_null(node))
            return json_null();
        return json_stringn((const char *)node->data.scalar.value, node->data.scalar.length);
    case YAML_SEQUENCE_NODE: {
        json_t *arr = json_array();
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            json_t *v = convert(cv, yaml_document_get_node(cv->doc, *it), depth + 1);
            if (!v) {
                json_decref(arr);
                return NULL;
            }
            json_array_append_new(arr, v);
        }
        return arr;
    }
    case YAML_MAPPING_NODE: {
        json_t *obj = json_object();
        for (yaml_node_pair_t *pr = node->data.mapping.pairs.start;
             pr < node->data.mapping.pairs.top; pr++) {
            yaml_node_t *k = yaml_document_get_node(cv->doc, pr->key);
            if (k->type != YAML_SCALAR_NODE) {
                node_error(cv, k, "mapping keys must be plain text");
                json_decref(obj);
                return NULL;
            }
            cleanup_free char *key =
                xstrndup((const char *)k->data.scalar.value, k->data.scalar.length);
            if (json_object_get(obj, key)) {
                cleanup_free char *msg = xasprintf("duplicate key '%s'", key);
                node_error(cv, k, msg);
                json_decref(obj);
                return NULL;
            }
            json_t *v = convert(cv, yaml_document_get_node(cv->doc, pr->value), depth + 1);
            if (!v) {
                json_decref(obj);
                return NULL;
            }
            json_object_set_new(obj, key, v);
        }
        return obj;
    }
    default:
        node_error(cv, node, "empty node");
        return NULL;
    }
}

static void parser_error(const yaml_parser_t *p, const char *name, chcp_error **err)
{
    error_set(err, CHCP_INVALID_ARGUMENT, "%s:%zu:%zu: %s%s%s", name, p->problem_mark.line + 1,
              p->problem_mark.column + 1, p->problem ? p->problem : "invalid YAML",
              p->context ? " " : "", p->context ? p->context : "");
}

json_t *yaml_to_json(const char *text, size_t len, const char *name, chcp_error **err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        error_set(err, CHCP_INTERNAL, "cannot initialise the YAML parser");
        return NULL;
    }
    /* libyaml asserts on a NULL input, which an empty file gives. */
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text ? text : ""), len);
    json_t *out = NULL;
    if (!yaml_parser_load(&parser, &doc)) {
        parser_error(&parser, name, err);
        yaml_parser_delete(&parser);
        return NULL;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        error_set(err, CHCP_INVALID_ARGUMENT, "%s: empty document", name);
    } else {
        converter cv = {.doc = &doc, .name = name, .err = err};
        out = convert(&cv, root, 0);
    }
    yaml_document_delete(&doc);
    if (out) {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            parser_error(&parser, name, err);
            json_decref(out);
            out = NULL;
        } else {
            if (yaml_document_get_root_node(&next)) {
                error_set(err, CHCP_INVALID_ARGUMENT,
                          "%s: more than one YAML document (one VM per file)", name);
                json_decref(out);
                out = NULL;
            }
            yaml_document_delete(&next);
        }
    }
    yaml_parser_delete(&parser);
    return out;
}
