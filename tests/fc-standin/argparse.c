/*
 * argparse.c - Firecracker's command-line parser (src/utils/src/arg_parser.rs),
 * shared by the firecracker and jailer stand-ins.
 *
 * Rules: "--name value" and "--name" flags only (no "=" forms, no short
 * options); a value may not start with "--"; everything after a bare "--"
 * is left to the caller (extra arguments). --help/-h, then --version, found
 * anywhere before "--" win over all other arguments. Then, for every argument
 * in alphabetical order (the parser's BTreeMap): a required one must be
 * given, "requires" and "forbids" are checked. The first problem is the
 * error, as UtilsArgParserError's Debug ("UnexpectedArgument(\"x\")") and
 * Display ("Found argument 'x' which wasn't expected, ...") forms.
 */
#include "standin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

fsi_arg *fsi_args_get(fsi_args *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->args[i].name, name))
            return &p->args[i];
    return NULL;
}

const char *fsi_args_value(fsi_args *p, const char *name)
{
    fsi_arg *a = fsi_args_get(p, name);
    return a->value ? a->value : a->def;
}

bool fsi_args_flag(fsi_args *p, const char *name)
{
    return fsi_args_get(p, name)->value != NULL;
}

static int error(char **debug, char **display, const char *variant, const char *a1, const char *a2,
                 char *text)
{
    char *d1 = fsi_debug_str(a1), *d2 = a2 ? fsi_debug_str(a2) : NULL;
    *debug =
        a2 ? fsi_xasprintf("%s(%s, %s)", variant, d1, d2) : fsi_xasprintf("%s(%s)", variant, d1);
    *display = text;
    free(d1);
    free(d2);
    return -1;
}

static char *unexpected(const char *a)
{
    return fsi_xasprintf("Found argument '%s' which wasn't expected, or isn't valid in this "
                         "context.",
                         a);
}

static int check_requirements(fsi_args *p, char **debug, char **display)
{
    for (size_t i = 0; i < p->n; i++) {
        fsi_arg *a = &p->args[i];
        if (a->required && !a->value)
            return error(debug, display, "MissingArgument", a->name, NULL,
                         fsi_xasprintf("Argument '%s' required, but not found.", a->name));
        if (!a->value)
            continue;
        if (a->requires && !fsi_args_get(p, a->requires)->value)
            return error(debug, display, "MissingArgument", a->requires, NULL,
                         fsi_xasprintf("Argument '%s' required, but not found.", a->requires));
        if (a->forbids && fsi_args_get(p, a->forbids)->value)
            return error(debug, display, "ForbiddenArgument", a->name, a->forbids,
                         fsi_xasprintf("Argument '%s' cannot be used together with argument "
                                       "'%s'.",
                                       a->forbids, a->name));
    }
    return 0;
}

int fsi_args_parse(fsi_args *p, int argc, char **argv, char **debug, char **display)
{
    int end = argc;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            end = i;
            break;
        }
    p->extra = end < argc ? end + 1 : argc;
    for (int i = 1; i < end; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return FSI_ARGS_HELP;
    for (int i = 1; i < end; i++)
        if (!strcmp(argv[i], "--version"))
            return FSI_ARGS_VERSION;
    for (int i = 1; i < end; i++) {
        const char *s = argv[i];
        if (strncmp(s, "--", 2))
            return error(debug, display, "UnexpectedArgument", s, NULL, unexpected(s));
        fsi_arg *a = fsi_args_get(p, s + 2);
        if (!a)
            return error(debug, display, "UnexpectedArgument", s + 2, NULL, unexpected(s + 2));
        if (a->value && !a->multiple)
            return error(debug, display, "DuplicateArgument", a->name, NULL,
                         fsi_xasprintf("The argument '%s' was provided more than once.", a->name));
        if (!a->takes_value) {
            a->value = "";
            continue;
        }
        if (i + 1 >= end || !strncmp(argv[i + 1], "--", 2))
            return error(debug, display, "MissingValue", a->name, NULL,
                         fsi_xasprintf("The argument '%s' requires a value, but none was "
                                       "supplied.",
                                       a->name));
        a->value = argv[++i];
        if (a->multiple && a->nvalues < FSI_ARGS_MAX_VALUES)
            a->values[a->nvalues++] = a->value;
    }
    return check_requirements(p, debug, display);
}

static void help_section(const fsi_args *p, bool required)
{
    size_t width = 0;
    for (size_t i = 0; i < p->n; i++) {
        const fsi_arg *a = &p->args[i];
        size_t w = a->takes_value ? 2 * strlen(a->name) + 7 : strlen(a->name) + 4;
        if (a->required == required && w > width)
            width = w;
    }
    for (size_t i = 0; i < p->n; i++) {
        const fsi_arg *a = &p->args[i];
        if (a->required != required)
            continue;
        char *name = a->takes_value ? fsi_xasprintf("  --%s <%s>", a->name, a->name)
                                    : fsi_xasprintf("  --%s", a->name);
        printf("%-*s   %s", (int)width, name, a->help);
        if (a->def)
            printf(" [default: \"%s\"]", a->def);
        printf("\n");
        free(name);
    }
}

void fsi_args_help(const fsi_args *p)
{
    bool any_required = false;
    for (size_t i = 0; i < p->n; i++)
        any_required = any_required || p->args[i].required;
    if (any_required) {
        printf("required arguments:\n");
        help_section(p, true);
        printf("\n");
    }
    printf("optional arguments:\n");
    help_section(p, false);
}

char *fsi_validate_id(const char *id, char **display)
{
    size_t n = strlen(id);
    if (n < 1 || n > 64) {
        *display = fsi_xasprintf("Invalid len (%zu);  the length must be between 1 and 64", n);
        return fsi_xasprintf("InvalidLen(%zu, 1, 64)", n);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!(c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || c >= 0x80)) {
            *display = fsi_xasprintf("Invalid char (%c) at position %zu", c, i);
            return fsi_xasprintf("InvalidChar('%c', %zu)", c, i);
        }
    }
    return NULL;
}
