/*
 * config_env.c - start-up checks beyond the syntax of each setting.
 *
 * config.c checks every value it reads; this file looks at what it does not
 * read and at the host. A misspelt variable (CHCP_PROT=9000) would otherwise
 * be ignored in silence and the daemon would start on the default, so every
 * variable that looks like chcp's but is not one it knows is reported, with
 * the known name it is closest to. The directories the daemon depends on are
 * checked before anything starts, so that a wrong path is one clear line at
 * start rather than a failed CreateVm later.
 */
#include "daemon/daemon.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Variable families chcp reads (UNKEY_VMCP_ for the sampling-rate alias). */
static const char *const families[] = {"UNKEY_CHCP_", "UNKEY_VMCP_", "CHCP_"};

enum { NAME_MAX_CMP = 64 };

static size_t family_len(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(families); i++)
        if (strncasecmp(name, families[i], strlen(families[i])) == 0)
            return strlen(families[i]);
    return 0;
}

/* The part after the family prefix, upper-cased, into out[NAME_MAX_CMP]. */
static size_t core_name(const char *name, char *out)
{
    const char *p = name + family_len(name);
    size_t n = 0;
    while (n < NAME_MAX_CMP - 1 && p[n]) {
        out[n] = (char)toupper((unsigned char)p[n]);
        n++;
    }
    out[n] = '\0';
    return n;
}

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* Optimal string alignment distance: insertions, deletions, substitutions
 * and transpositions of neighbours (the usual typing slips) cost 1. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t d[NAME_MAX_CMP + 1][NAME_MAX_CMP + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            d[i][j] = min3(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < d[i][j])
                d[i][j] = d[i - 2][j - 2] + 1;
        }
    }
    return d[la][lb];
}

/*
 * Names are compared without their family prefix, plus one for a different
 * prefix, so CHCP_OTEL_ENABLED is one step from UNKEY_CHCP_OTEL_ENABLED.
 * Near enough: at most 2 steps, or a quarter of the name for long ones.
 */
const char *config_suggest_variable(const char *name)
{
    char core[NAME_MAX_CMP], known_core[NAME_MAX_CMP];
    size_t n = core_name(name, core);
    size_t prefix = family_len(name);
    const char *best = NULL;
    size_t best_score = SIZE_MAX;
    for (size_t i = 0; config_variable_name(i); i++) {
        const char *known = config_variable_name(i);
        if (!family_len(known))
            continue; /* OTEL_EXPORTER_OTLP_ENDPOINT: another family's name */
        size_t kn = core_name(known, known_core);
        size_t kp = family_len(known);
        size_t score = edit_distance(core, n, known_core, kn) +
                       (prefix != kp || strncasecmp(name, known, prefix) != 0);
        if (score < best_score) {
            best_score = score;
            best = known;
        }
    }
    size_t limit = n / 4 > 2 ? n / 4 : 2;
    return best_score <= limit ? best : NULL;
}

size_t config_unknown_variables(char *const *envp, config_unknown_fn report, void *ud)
{
    size_t count = 0;
    for (; envp && *envp; envp++) {
        const char *eq = strchr(*envp, '=');
        if (!eq || eq == *envp)
            continue;
        cleanup_free char *name = xstrndup(*envp, (size_t)(eq - *envp));
        if (!family_len(name))
            continue;
        bool known = false;
        for (size_t i = 0; !known && config_variable_name(i); i++)
            known = strcmp(config_variable_name(i), name) == 0;
        if (known)
            continue;
        report(name, config_suggest_variable(name), ud);
        count++;
    }
    return count;
}

/* ---- host paths ----------------------------------------------------------- */

static int check_dir(const char *what, const char *path, int mode, chcp_error **err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return error_set_errno(err, CHCP_FAILED_PRECONDITION, errno, "%s %s", what, path);
    if (!S_ISDIR(st.st_mode))
        return error_set(err, CHCP_FAILED_PRECONDITION, "%s %s: not a directory", what, path);
    if (access(path, mode) < 0)
        return error_set_errno(err, CHCP_FAILED_PRECONDITION, errno, "%s %s", what, path);
    return 0;
}

int config_check_paths(const chcp_config *cfg, chcp_error **err)
{
    struct stat st;
    /* A missing state directory is created at start (with its parents). */
    if ((stat(cfg->state_dir, &st) == 0 || errno != ENOENT) &&
        check_dir("state directory (CHCP_STATE_DIR)", cfg->state_dir, W_OK | X_OK, err) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n_image_dirs; i++)
        if (check_dir("image directory (CHCP_IMAGE_DIRS)", cfg->image_dirs[i], R_OK | X_OK, err) <
            0)
            return -1;
    if (cfg->unix_socket) {
        cleanup_free char *dir = xstrdup(cfg->unix_socket);
        char *slash = strrchr(dir, '/');
        slash[slash == dir ? 1 : 0] = '\0';
        if (check_dir("directory of the Unix socket (CHCP_UNIX_SOCKET)", dir, W_OK | X_OK, err) < 0)
            return -1;
    }
    return 0;
}
