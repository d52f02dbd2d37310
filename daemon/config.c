/*
 * config.c: the settings table and everything generated from it (INI, CLI, --help,
 * --check-config output).
 *
 * One row per setting: {name, section, type, field offset, bounds, default text, help}.
 * The INI key and the long option are the same name ("deadline-ms"; the file may also
 * write "deadline_ms"), so an operator never has to translate between the two.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "errbuf.h"
#include "token_file.h"

typedef enum {
    CFG_STR,    /* char *, "none" or "" clears it */
    CFG_SECRET, /* a CFG_STR never printed back (--check-config) */
    CFG_LIST,   /* char *[CONFIG_MAX_LISTEN] + count, repeatable */
    CFG_INT,    /* int in [min, max] */
    CFG_I64,    /* int64_t in [min, max] */
    CFG_U64,    /* uint64_t */
    CFG_DOUBLE, /* double in [min, max] */
    CFG_FLOAT,  /* float in [min, max] */
    CFG_BOOL,   /* bool: true/false/yes/no/on/off/1/0; "--name" alone means true */
    CFG_MODE,   /* int, octal permission bits */
    CFG_LEVEL,  /* int syslog priority, by name */
} cfg_type_t;

typedef struct cfg_desc {
    const char *name;
    const char *section;
    cfg_type_t type;
    size_t offset;
    double min, max;
    const char *def;
    const char *arg; /* placeholder in --help */
    const char *help;
} cfg_desc_t;

#define F(field) offsetof(mpcd_config_t, field)

static const cfg_desc_t table[] = {
    {"model", "model", CFG_STR, F(model), 0, 0, "none", "PATH",
     "Model file (mpc-rssm safetensors, model/FORMAT.md). Without one the daemon starts "
     "not ready and waits for a Reload."},
    {"watch", "model", CFG_BOOL, F(watch), 0, 1, "false", NULL,
     "Reload when the model file is replaced (write a temporary file, then rename it over "
     "the model path)."},
    {"model-dir", "model", CFG_STR, F(model_dir), 0, 0, "none", "DIR",
     "Directory that clients' Reload paths are confined to: a relative path is taken from "
     "here, an absolute one must lie inside, and no symlink or '..' may lead out. \"none\": "
     "the directory of --model (and no client Reload when there is no --model)."},
    {"max-model-mb", "model", CFG_I64, F(max_model_mb), 1, 1 << 16, "1024", "MB",
     "Largest model file a load reads (checked before it is mapped)."},
    {"reload-timeout-s", "model", CFG_DOUBLE, F(reload_timeout_s), 0.1, 3600, "60", "S",
     "A model load still running after this long is abandoned and reported as failed; "
     "the serving model stays."},
    {"listen", "server", CFG_LIST, F(listen), 0, 0, "tcp://127.0.0.1:7070", "ADDR",
     "Protocol listener: tcp://HOST:PORT (IPv6 as tcp://[::1]:7070) or unix:PATH. "
     "Repeat for several (tcp://[::]:PORT is IPv6 only: add tcp://0.0.0.0:PORT for IPv4). "
     "Ignored under systemd socket activation."},
    {"status-listen", "server", CFG_STR, F(status_listen), 0, 0, "127.0.0.1:9464", "HOST:PORT",
     "HTTP status endpoint (/metrics, /status, /healthz, /readyz); \"none\" "
     "disables it."},
    {"max-connections", "server", CFG_INT, F(max_connections), 1, 65536, "256", "N",
     "Connections served at once. At the limit a new connection takes the place of the "
     "oldest one that has not completed a Hello; when there is none it gets Error "
     "OVERLOADED and is closed."},
    {"max-frame", "server", CFG_I64, F(max_frame), 64, 64 << 20, "1048576", "BYTES",
     "Largest request frame; a larger one gets Error FRAME_TOO_LARGE and the connection "
     "is closed."},
    {"idle-timeout-s", "server", CFG_DOUBLE, F(idle_timeout_s), 0, 86400 * 7, "300", "S",
     "Close connections silent for this long (0 = never)."},
    {"max-queued", "server", CFG_INT, F(max_queued), 1, 4096, "16", "N",
     "Requests a connection may have waiting behind one in progress (a step or a "
     "reload); further ones are answered at once with Error OVERLOADED."},
    {"unix-mode", "server", CFG_MODE, F(unix_mode), 0, 0777, "0660", "MODE",
     "Permission bits of unix: sockets (octal)."},
    {"max-connections-per-peer", "server", CFG_INT, F(max_connections_per_peer), 1, 65536, "64",
     "N",
     "Connections one peer (an IP address, or a uid on Unix sockets) may hold. At this "
     "limit, or at max-connections, a new connection takes the place of the oldest one "
     "that has not completed a Hello; when there is none it is refused."},
    {"hello-timeout-s", "server", CFG_DOUBLE, F(hello_timeout_s), 0, 3600, "10", "S",
     "Close connections that have not completed a Hello this long after connecting "
     "(0 = never). With auth-token set, a Hello with a wrong token does not count."},
    {"max-unsent-kb", "server", CFG_INT, F(max_unsent_kb), 16, 1 << 20, "1024", "KB",
     "Per-connection memory budget: while this many reply bytes wait for a client that "
     "does not read, its further requests wait unread."},
    {"auth-token", "server", CFG_SECRET, F(auth_token), 0, 0, "none", "TOKEN",
     "Control role: when set, Hello must carry this token (or admin-token) before Step, "
     "Reset or Status are served (Error UNAUTHENTICATED otherwise). Prefer "
     "auth-token-file: command lines and config files are easy to leak."},
    {"auth-token-file", "server", CFG_STR, F(auth_token_file), 0, 0, "none", "FILE",
     "Read auth-token from the first line of FILE (e.g. a systemd credential)."},
    {"admin-token", "server", CFG_SECRET, F(admin_token), 0, 0, "none", "TOKEN",
     "Admin role: a Hello carrying this token may also Reload. Without it, only Unix-"
     "socket peers running as the daemon's own user may (SIGHUP and --watch always can)."},
    {"admin-token-file", "server", CFG_STR, F(admin_token_file), 0, 0, "none", "FILE",
     "Read admin-token from the first line of FILE."},
    {"drain-grace-s", "server", CFG_DOUBLE, F(drain_grace_s), 0, 3600, "2", "S",
     "On SIGTERM (or mpcctl drain) the daemon admits no new session and keeps serving the "
     "open ones this long (a balancer's health check sees /readyz 503 \"draining\" "
     "meanwhile), then closes each right after its next reply with Error DRAINING, so its "
     "client resumes elsewhere, and exits when none is left. SIGINT stops at once."},
    {"shutdown-timeout-s", "server", CFG_DOUBLE, F(shutdown_timeout_s), 0, 3600, "10", "S",
     "Once stopping (after a drain, or on SIGINT), wait at most this long for in-flight "
     "requests before exiting."},
    {"deadline-ms", "control", CFG_DOUBLE, F(deadline_ms), 0.1, 60000, "20", "MS",
     "Default step deadline, from the moment the request was read (Step.deadline_us "
     "overrides it per request)."},
    {"workers", "control", CFG_INT, F(workers), 0, 256, "0", "N",
     "Planner worker threads (steps planned concurrently); 0 = one per CPU."},
    {"min-iterations", "control", CFG_INT, F(min_iterations), 0, 10000, "1", "N",
     "Admission control: a Hello is refused (OVERLOADED) when admitting it would leave the "
     "admitted sessions less than N CEM iterations per plan at their step rates, by the "
     "measured cost of an iteration; 0 turns admission control off."},
    {"max-load", "control", CFG_DOUBLE, F(max_load), 0.05, 1, "0.65", "FRAC",
     "Admission control: the fraction of the workers' time the admitted sessions' minimum "
     "plans may take. The rest absorbs arrivals that bunch up, the loop's own work and "
     "other processes (README \"Serving many robots\": above ~0.7 some plans missed their "
     "minimum on 2 vCPUs)."},
    {"warm-up-ms", "control", CFG_DOUBLE, F(warm_up_ms), 0, 1000, "10", "MS",
     "Planner workers keep their CPUs busy from this long before a paced session's next "
     "step is due (its last step + 1 / rate_hz) until it comes: after an idle spell the "
     "first ~10 ms of a plan ran at a third of the speed (measured on a 2-vCPU VM). Costs "
     "that much CPU per step and worker thread while robots are paced; 0 turns it off."},
    {"history", "control", CFG_INT, F(history), 1, 4096, "32", "N",
     "(observation, action) pairs each session keeps to re-sync its belief after a model "
     "swap."},
    {"posterior-sample", "control", CFG_BOOL, F(posterior_sample), 0, 1, "false", NULL,
     "Sample the latent from the posterior instead of taking its mean."},
    {"seed", "control", CFG_U64, F(seed), 0, 0, "1", "N",
     "Base of the sessions' random streams (planning, exploration noise)."},
    {"candidates", "planner", CFG_INT, F(planner.candidates), 1, 1 << 20, "1000", "J",
     "CEM candidate action sequences per iteration."},
    {"top", "planner", CFG_INT, F(planner.top_k), 1, 1 << 20, "100", "K",
     "Elite sequences the Gaussian is refitted to."},
    {"iterations", "planner", CFG_INT, F(planner.iterations), 1, 10000, "10", "I",
     "CEM iterations at most (fewer when the deadline cuts them)."},
    {"horizon", "planner", CFG_INT, F(planner.horizon), 1, 1000, "12", "H",
     "Planning horizon in control steps."},
    {"threads", "planner", CFG_INT, F(planner.threads), 1, 256, "1", "N",
     "Threads per planner (each worker's team, including the worker itself)."},
    {"nice", "planner", CFG_INT, F(planner.nice), 0, 19, "0", "N",
     "Niceness of the planner threads (workers and their teams). The event loop asks the "
     "kernel for a short time slice instead, so it preempts a plan on wake-up either way; "
     "raising this also lets every other process on the machine preempt the planner "
     "(measured: with 8 simulators on the same 2 cores, nice 5 cost 4x more fallbacks)."},
    {"margin-ms", "planner", CFG_DOUBLE, F(margin_ms), 0, 1000, "1", "MS",
     "Planning stops this long before the deadline to leave time for the reply (on top of "
     "the loop's measured reply latency). 0.5 let one reply in 3000 end 0.1 ms late with "
     "8 simulators sharing 2 cores; libplanner's default is 1 too."},
    {"sample-latent", "planner", CFG_BOOL, F(planner.sample_latent), 0, 1, "true", NULL,
     "Sample imagined latents from the prior (PlaNet) instead of using its mean."},
    {"use-value", "planner", CFG_BOOL, F(planner.use_value), 0, 1, "true", NULL,
     "Add the value head's terminal value when the model has one."},
    {"population-decay", "planner", CFG_DOUBLE, F(planner.population_decay), 0.01, 1, "1", "X",
     "iCEM: candidates shrink by this factor per iteration (1 = off)."},
    {"keep-elites", "planner", CFG_DOUBLE, F(planner.keep_elites), 0, 1, "0", "FRAC",
     "iCEM: fraction of the elites carried into the next iteration."},
    {"noise-beta", "planner", CFG_DOUBLE, F(planner.noise_beta), 0, 4, "0", "BETA",
     "iCEM: colored-noise exponent of the samples (0 = white, 2 = iCEM)."},
    {"mppi", "planner", CFG_BOOL, F(planner.mppi), 0, 1, "false", NULL,
     "MPPI-style refit: weight all candidates by exp(temperature * (R - max R))."},
    {"mppi-temperature", "planner", CFG_DOUBLE, F(planner.mppi_temperature), 0, 1e6, "1", "T",
     "MPPI temperature."},
    {"min-std", "planner", CFG_FLOAT, F(planner.min_std), 0, 1, "0", "X",
     "Floor on the sampling std, relative to half the action range."},
    {"init-std", "planner", CFG_FLOAT, F(planner.init_std), 0.001, 10, "1", "X",
     "Initial sampling std, relative to half the action range."},
    {"record", "record", CFG_STR, F(record), 0, 0, "none", "DIR",
     "Append each session's transitions to episode files in DIR (common/EPISODES.md)."},
    {"record-max-mb", "record", CFG_I64, F(record_max_mb), 1, 1 << 24, "1024", "MB",
     "Stop recording once DIR holds this much."},
    {"record-episodes-per-min", "record", CFG_INT, F(record_episodes_per_min), 1, 1000000, "60",
     "N",
     "Episode files one session may start per minute (burst: as many); further episodes of "
     "that session are not recorded (counted in /metrics)."},
    {"log-level", "log", CFG_LEVEL, F(log_level), 0, 0, "info", "LEVEL",
     "err, warning, notice, info or debug."},
};

#define NTABLE (sizeof table / sizeof table[0])

static const char *const level_names[] = {"emerg",   "alert",  "crit", "err",
                                          "warning", "notice", "info", "debug"};

/* "deadline_ms" and "deadline-ms" are the same key. */
static bool name_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a == '_' ? '-' : *a, y = *b == '_' ? '-' : *b;
        if (x != y)
            return false;
    }
    return *a == *b;
}

static const cfg_desc_t *find(const char *name)
{
    for (size_t i = 0; i < NTABLE; i++)
        if (name_eq(table[i].name, name))
            return &table[i];
    return NULL;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcasecmp(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_number(const char *v, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(x))
        return -EINVAL;
    *out = x;
    return 0;
}

static bool is_none(const char *v)
{
    return !*v || !strcmp(v, "none");
}

static int set_string(char **slot, const char *v)
{
    char *s = NULL;
    if (!is_none(v) && !(s = strdup(v)))
        return -ENOMEM;
    free(*slot);
    *slot = s;
    return 0;
}

static int apply(mpcd_config_t *c, const cfg_desc_t *d, const char *v, char *err, size_t errlen)
{
    void *p = (char *)c + d->offset;
    double x;
    bool b;
    switch (d->type) {
    case CFG_STR:
    case CFG_SECRET:
        return set_string(p, v);
    case CFG_LIST:
        if (c->nlisten >= CONFIG_MAX_LISTEN) {
            errbuf_set(err, errlen, "%s: at most %d values", d->name, CONFIG_MAX_LISTEN);
            return -EINVAL;
        }
        if (is_none(v))
            return 0;
        if (!(c->listen[c->nlisten] = strdup(v)))
            return -ENOMEM;
        c->nlisten++;
        return 0;
    case CFG_BOOL:
        if (parse_bool(v, &b)) {
            errbuf_set(err, errlen, "%s: expected true or false, got '%s'", d->name, v);
            return -EINVAL;
        }
        *(bool *)p = b;
        return 0;
    case CFG_MODE: {
        char *end;
        errno = 0;
        long m = strtol(v, &end, 8);
        if (end == v || *end || errno || m < 0 || m > 0777) {
            errbuf_set(err, errlen, "%s: expected octal permission bits like 0660, got '%s'",
                       d->name, v);
            return -EINVAL;
        }
        *(int *)p = (int)m;
        return 0;
    }
    case CFG_LEVEL:
        for (int i = 3; i < 8; i++)
            if (!strcasecmp(v, level_names[i]) || (v[0] == '0' + i && !v[1])) {
                *(int *)p = i;
                return 0;
            }
        errbuf_set(err, errlen, "%s: expected err, warning, notice, info or debug, got '%s'",
                   d->name, v);
        return -EINVAL;
    case CFG_U64: {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(v, &end, 0);
        if (end == v || *end || errno || v[0] == '-') {
            errbuf_set(err, errlen, "%s: expected an unsigned integer, got '%s'", d->name, v);
            return -EINVAL;
        }
        *(uint64_t *)p = u;
        return 0;
    }
    default:
        break;
    }
    if (parse_number(v, &x)) {
        errbuf_set(err, errlen, "%s: expected a number, got '%s'", d->name, v);
        return -EINVAL;
    }
    bool integral = d->type == CFG_INT || d->type == CFG_I64;
    if (integral && x != floor(x)) {
        errbuf_set(err, errlen, "%s: expected an integer, got '%s'", d->name, v);
        return -EINVAL;
    }
    if (x < d->min || x > d->max) {
        errbuf_set(err, errlen, "%s: %s is out of range [%g, %g]", d->name, v, d->min, d->max);
        return -EINVAL;
    }
    switch (d->type) {
    case CFG_INT:
        *(int *)p = (int)x;
        break;
    case CFG_I64:
        *(int64_t *)p = (int64_t)x;
        break;
    case CFG_DOUBLE:
        *(double *)p = x;
        break;
    case CFG_FLOAT:
        *(float *)p = (float)x;
        break;
    default:
        break;
    }
    return 0;
}

int config_set(mpcd_config_t *c, const char *name, const char *value, char *err, size_t errlen)
{
    const cfg_desc_t *d = find(name);
    if (!d) {
        errbuf_set(err, errlen, "unknown setting '%s'", name);
        return -EINVAL;
    }
    return apply(c, d, value, err, errlen);
}

static void clear_list(mpcd_config_t *c)
{
    for (int i = 0; i < c->nlisten; i++) {
        free(c->listen[i]);
        c->listen[i] = NULL;
    }
    c->nlisten = 0;
}

int config_defaults(mpcd_config_t *c)
{
    memset(c, 0, sizeof *c);
    cem_config_default(&c->planner);
    for (size_t i = 0; i < NTABLE; i++) {
        char err[256];
        int rc = apply(c, &table[i], table[i].def, err, sizeof err);
        if (rc) {
            config_free(c);
            return rc;
        }
    }
    c->planner.margin_s = c->margin_ms / 1000.0;
    return 0;
}

void config_free(mpcd_config_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < NTABLE; i++) {
        if (table[i].type == CFG_STR || table[i].type == CFG_SECRET) {
            char **s = (char **)((char *)c + table[i].offset);
            if (*s && table[i].type == CFG_SECRET)
                explicit_bzero(*s, strlen(*s));
            free(*s);
            *s = NULL;
        }
    }
    clear_list(c);
}

/* ---- INI ---- */

typedef struct ini_ctx {
    mpcd_config_t *c;
    const char *path;
    bool listen_cleared; /* the file's first listen= replaces the default */
    char *err;
    size_t errlen;
    int rc;
} ini_ctx_t;

static int on_ini_line(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx_t *x = user;
    char msg[256];
    const cfg_desc_t *d = find(name);
    if (!d) {
        errbuf_set(msg, sizeof msg, "unknown setting '%s'", name);
        goto fail;
    }
    /* Keys may sit in their own section or before any section. */
    if (section[0] && strcmp(section, d->section)) {
        errbuf_set(msg, sizeof msg, "'%s' belongs in section [%s], not [%s]", name, d->section,
                   section);
        goto fail;
    }
    if (d->type == CFG_LIST && !x->listen_cleared) {
        clear_list(x->c);
        x->listen_cleared = true;
    }
    if (apply(x->c, d, value, msg, sizeof msg))
        goto fail;
    return 1;
fail:
    if (!x->rc) /* keep the first error; inih reports its line */
        errbuf_set(x->err, x->errlen, "%s", msg);
    x->rc = -EINVAL;
    return 0;
}

int config_load_file(mpcd_config_t *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        errbuf_set(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char msg[256] = "";
    ini_ctx_t x = {.c = c, .path = path, .err = msg, .errlen = sizeof msg};
    int line = ini_parse_file(f, on_ini_line, &x);
    fclose(f);
    if (line) {
        errbuf_set(err, errlen, "%s:%d: %s", path, line, msg[0] ? msg : "syntax error");
        return -EINVAL;
    }
    c->planner.margin_s = c->margin_ms / 1000.0;
    return 0;
}

/* ---- command line ---- */

int config_parse_args(mpcd_config_t *c, int argc, char **argv, config_action_t *action,
                      char *err, size_t errlen)
{
    int rc = config_defaults(c);
    if (rc) {
        errbuf_set(err, errlen, "out of memory");
        return rc;
    }
    *action = CONFIG_RUN;
    /* The file first, so that every flag overrides it wherever it appears. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *path = NULL;
        if (!strcmp(a, "--config")) {
            if (i + 1 >= argc) {
                errbuf_set(err, errlen, "--config: missing FILE");
                return -EINVAL;
            }
            path = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            path = a + 9;
        } else if (!strcmp(a, "--")) {
            break;
        }
        if (path && (rc = config_load_file(c, path, err, errlen)))
            return rc;
    }
    bool listen_cleared = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *action = CONFIG_HELP;
            return 0;
        }
        if (!strcmp(a, "--version")) {
            *action = CONFIG_VERSION;
            continue;
        }
        if (!strcmp(a, "--check-config")) {
            *action = CONFIG_CHECK;
            continue;
        }
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9))
            continue;
        if (strncmp(a, "--", 2) || !a[2]) {
            errbuf_set(err, errlen, "unexpected argument '%s' (try --help)", a);
            return -EINVAL;
        }
        char name[64];
        const char *eq = strchr(a + 2, '='), *value = NULL;
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (n >= sizeof name) {
            errbuf_set(err, errlen, "unknown option '%s' (try --help)", a);
            return -EINVAL;
        }
        memcpy(name, a + 2, n);
        name[n] = 0;
        const cfg_desc_t *d = find(name), *base = NULL;
        bool negated = false;
        if (!d && !strncmp(name, "no-", 3))
            base = find(name + 3);
        if (base && base->type == CFG_BOOL) {
            d = base;
            negated = true;
        } else if (base && !strcmp(base->name, "status-listen")) {
            d = base;
            value = "none";
        }
        if (!d || (negated && eq)) {
            errbuf_set(err, errlen, "unknown option '%s' (try --help)", a);
            return -EINVAL;
        }
        if (eq)
            value = eq + 1;
        else if (negated)
            value = "false";
        else if (d->type == CFG_BOOL)
            value = "true";
        else if (!value) {
            if (i + 1 >= argc) {
                errbuf_set(err, errlen, "--%s: missing %s", d->name, d->arg);
                return -EINVAL;
            }
            value = argv[++i];
        }
        if (d->type == CFG_LIST && !listen_cleared) {
            clear_list(c);
            listen_cleared = true;
        }
        char msg[256];
        if ((rc = apply(c, d, value, msg, sizeof msg))) {
            errbuf_set(err, errlen, "--%s", msg);
            return rc;
        }
    }
    c->planner.margin_s = c->margin_ms / 1000.0;
    return 0;
}

int config_validate(const mpcd_config_t *c, char *err, size_t errlen)
{
    char msg[256];
    if (cem_config_validate(&c->planner, msg, sizeof msg)) {
        errbuf_set(err, errlen, "planner: %s", msg);
        return -EINVAL;
    }
    if (c->nlisten == 0) {
        errbuf_set(err, errlen, "listen: at least one address is needed");
        return -EINVAL;
    }
    address_t a;
    for (int i = 0; i < c->nlisten; i++) {
        if (address_parse(c->listen[i], ADDRESS_LISTEN, &a, msg, sizeof msg)) {
            errbuf_set(err, errlen, "listen: %s", msg);
            return -EINVAL;
        }
    }
    if (c->status_listen &&
        address_parse(c->status_listen, ADDRESS_STATUS, &a, msg, sizeof msg)) {
        errbuf_set(err, errlen, "status-listen: %s", msg);
        return -EINVAL;
    }
    if (c->min_iterations > c->planner.iterations) {
        errbuf_set(err, errlen, "min-iterations (%d) must not exceed iterations (%d)",
                   c->min_iterations, c->planner.iterations);
        return -EINVAL;
    }
    if (c->margin_ms >= c->deadline_ms) {
        errbuf_set(err, errlen, "margin-ms (%g) must be below deadline-ms (%g)", c->margin_ms,
                   c->deadline_ms);
        return -EINVAL;
    }
    return 0;
}

/* ---- token files ---- */

static int read_token(const char *path, char **slot, FILE *warn, char *err, size_t errlen)
{
    char token[TOKEN_FILE_MAX + 1];
    bool loose;
    int rc = token_file_read(path, token, sizeof token, &loose, err, errlen);
    if (rc)
        return rc;
    if (warn && loose)
        fprintf(warn, "mpcd: warning: token file %s can be read by group or others\n", path);
    *slot = strdup(token);
    explicit_bzero(token, sizeof token);
    return *slot ? 0 : -ENOMEM;
}

int config_read_token_files(mpcd_config_t *c, FILE *warn, char *err, size_t errlen)
{
    struct {
        const char *name;
        char *file, **token;
    } t[] = {{"auth-token", c->auth_token_file, &c->auth_token},
             {"admin-token", c->admin_token_file, &c->admin_token}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (!t[i].file)
            continue;
        if (*t[i].token) {
            errbuf_set(err, errlen, "%s and %s-file are both set; give one", t[i].name,
                       t[i].name);
            return -EINVAL;
        }
        int rc = read_token(t[i].file, t[i].token, warn, err, errlen);
        if (rc)
            return rc;
    }
    if (c->auth_token && c->admin_token && !strcmp(c->auth_token, c->admin_token)) {
        errbuf_set(err, errlen, "admin-token must differ from auth-token");
        return -EINVAL;
    }
    return 0;
}

/* ---- help and effective configuration ---- */

static void print_wrapped(FILE *out, const char *text, int indent, int width)
{
    int col = indent;
    fprintf(out, "%*s", indent, "");
    while (*text) {
        const char *sp = strchr(text, ' ');
        int len = sp ? (int)(sp - text) : (int)strlen(text);
        if (col > indent && col + 1 + len > width) {
            fprintf(out, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', out);
            col++;
        }
        fprintf(out, "%.*s", len, text);
        col += len;
        text += len;
        while (*text == ' ')
            text++;
    }
    fputc('\n', out);
}

void config_print_help(FILE *out, const char *prog)
{
    fprintf(out,
            "NAME\n"
            "    %s - real-time model-predictive control daemon\n\n"
            "SYNOPSIS\n"
            "    %s --model PATH [--listen ADDR]... [--status-listen HOST:PORT]\n"
            "         [--deadline-ms MS] [--config FILE] [OPTION]...\n"
            "    %s --check-config [--config FILE] [OPTION]...\n\n"
            "DESCRIPTION\n"
            "    Serves a trained RSSM world model over the mpc.v1 protocol\n"
            "    (proto/mpc.proto): each client session sends observations and gets back the\n"
            "    first action of a CEM plan computed in latent space within a deadline.\n"
            "    Models are hot-swapped without dropping requests (Reload request, SIGHUP,\n"
            "    --watch). Settings come from the built-in defaults, then --config FILE\n"
            "    (INI; keys as below, in their [section] or before any section), then the\n"
            "    command line (--name VALUE or --name=VALUE; --no-NAME for booleans).\n\n"
            "OPTIONS\n"
            "    --config FILE\n"
            "        Read settings from an INI file.\n"
            "    --check-config\n"
            "        Validate the settings (and load the model, if one is set), print the\n"
            "        effective configuration as INI and exit.\n"
            "    --no-status-listen\n"
            "        Same as --status-listen none.\n"
            "    -h, --help\n"
            "        Show this help.\n"
            "    --version\n"
            "        Print the version.\n",
            prog, prog, prog);
    const char *section = "";
    for (size_t i = 0; i < NTABLE; i++) {
        const cfg_desc_t *d = &table[i];
        if (strcmp(section, d->section)) {
            section = d->section;
            fprintf(out, "\n  [%s]\n", section);
        }
        if (d->type == CFG_BOOL)
            fprintf(out, "    --%s, --no-%s\n", d->name, d->name);
        else
            fprintf(out, "    --%s %s%s\n", d->name, d->arg,
                    d->type == CFG_LIST ? "  (repeatable)" : "");
        char text[512];
        snprintf(text, sizeof text, "%s Default: %s.", d->help, d->def);
        print_wrapped(out, text, 8, 88);
    }
    fprintf(out,
            "\nSIGNALS\n"
            "    SIGHUP           reload the model file (same path)\n"
            "    SIGTERM, SIGINT  stop accepting, answer what is in flight, exit 0\n\n"
            "SYSTEMD\n"
            "    Type=notify: READY=1, RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1 (when\n"
            "    WatchdogSec is set). Socket activation: sockets passed by systemd replace\n"
            "    --listen.\n\n"
            "LOGGING\n"
            "    To stderr, one line per event, prefixed <N> with the syslog priority\n"
            "    (journald's convention).\n\n"
            "ENVIRONMENT\n"
            "    MPC_RSSM_GEMM=blas  run the model on OpenBLAS instead of librssm's\n"
            "                        packed-weight AVX2 kernel (read when a model loads)\n\n"
            "EXIT STATUS\n"
            "    0  clean shutdown, or --help / --check-config succeeded\n"
            "    1  runtime failure (cannot listen, cannot load the model at start)\n"
            "    2  invalid configuration or command line\n\n"
            "EXAMPLES\n"
            "    %s --model cartpole.safetensors --listen tcp://127.0.0.1:7070 \\\n"
            "         --listen unix:/run/mpcd/mpcd.sock --status-listen 127.0.0.1:9464 \\\n"
            "         --deadline-ms 20\n",
            prog);
}

void config_print(FILE *out, const mpcd_config_t *c)
{
    const char *section = "";
    for (size_t i = 0; i < NTABLE; i++) {
        const cfg_desc_t *d = &table[i];
        const void *p = (const char *)c + d->offset;
        if (strcmp(section, d->section)) {
            section = d->section;
            fprintf(out, "%s[%s]\n", i ? "\n" : "", section);
        }
        switch (d->type) {
        case CFG_STR:
        case CFG_SECRET: {
            const char *s = *(char *const *)p;
            if (d->type == CFG_SECRET && s)
                fprintf(out, "# %s = (set, not shown)\n", d->name);
            else
                fprintf(out, "%s = %s\n", d->name, s ? s : "none");
            break;
        }
        case CFG_LIST:
            for (int k = 0; k < c->nlisten; k++)
                fprintf(out, "%s = %s\n", d->name, c->listen[k]);
            break;
        case CFG_INT:
            fprintf(out, "%s = %d\n", d->name, *(const int *)p);
            break;
        case CFG_I64:
            fprintf(out, "%s = %lld\n", d->name, (long long)*(const int64_t *)p);
            break;
        case CFG_U64:
            fprintf(out, "%s = %llu\n", d->name, (unsigned long long)*(const uint64_t *)p);
            break;
        case CFG_DOUBLE:
            fprintf(out, "%s = %.17g\n", d->name, *(const double *)p);
            break;
        case CFG_FLOAT:
            fprintf(out, "%s = %.9g\n", d->name, (double)*(const float *)p);
            break;
        case CFG_BOOL:
            fprintf(out, "%s = %s\n", d->name, *(const bool *)p ? "true" : "false");
            break;
        case CFG_MODE:
            fprintf(out, "%s = 0%o\n", d->name, (unsigned)*(const int *)p);
            break;
        case CFG_LEVEL:
            fprintf(out, "%s = %s\n", d->name, level_names[*(const int *)p]);
            break;
        }
    }
}
