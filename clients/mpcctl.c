/*
 * mpcctl.c: control tool of the mpcd daemon: status, reload, drain, ping and watch.
 *
 * Every command is one or more protocol requests through libmpcclient after a Hello
 * (named "mpcctl"). With a token (--token-file, or $MPCD_TOKEN_FILE) the Hello carries it,
 * which gives the connection the daemon's control or admin role; without one it has the
 * control role on a daemon without auth-token, and Reload works over the Unix socket as
 * the daemon's own user. Exit statuses are shared with the other tools
 * (tools/tool.h) so scripts can tell a refusal from an unreachable daemon.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpcclient.h"
#include "token_file.h"
#include "tools/latency.h"
#include "tools/tool.h"

static const char *prog = "mpcctl";

static void usage(FILE *out)
{
    fprintf(
        out,
        "NAME\n"
        "    mpcctl - query and control a running mpcd\n"
        "\n"
        "SYNOPSIS\n"
        "    mpcctl [--connect ADDR] [--timeout MS] [--token-file FILE] status [--json]\n"
        "    mpcctl [--connect ADDR] [--timeout MS] [--token-file FILE] reload [PATH]\n"
        "    mpcctl [--connect ADDR] [--timeout MS] [--token-file FILE] drain\n"
        "    mpcctl [--connect ADDR] [--timeout MS] [--token-file FILE] ping [--count N]\n"
        "           [--interval MS]\n"
        "    mpcctl [--connect ADDR] [--timeout MS] [--token-file FILE] watch [--count N]\n"
        "           [--interval MS]\n"
        "\n"
        "DESCRIPTION\n"
        "    status   Print the daemon's status: model, counters, latency percentiles of the\n"
        "             last minute per stage, and one line per session. With --json, print the\n"
        "             daemon's full /status JSON document instead.\n"
        "    reload   Hot-swap the model from PATH, or re-read the current model file when "
        "PATH\n"
        "             is omitted. The old model keeps serving if the new one is refused. "
        "Needs\n"
        "             the admin role: --token-file with the daemon's admin-token, or the Unix\n"
        "             socket as the daemon's user. PATH is resolved by the daemon beneath its\n"
        "             model-dir (relative to it, or absolute inside it); an existing local "
        "PATH\n"
        "             is sent as an absolute path.\n"
        "    drain    Drain the daemon, as SIGTERM does: it admits no new session (/readyz\n"
        "             503 \"draining\"), serves the open ones for drain-grace-s, then hands\n"
        "             each over right after a reply (Error DRAINING: its client resumes on\n"
        "             another instance) and exits when none is left. Needs the admin role.\n"
        "    ping     Measure the round-trip time of a Status request N times (default 5) and\n"
        "             print min/avg/max.\n"
        "    watch    Refresh the daemon's latency percentiles and request rate every "
        "interval\n"
        "             (default 1000 ms) until Ctrl-C, or N times with --count.\n"
        "\n"
        "OPTIONS\n"
        "    -c, --connect ADDR   tcp://HOST:PORT (IPv6 as tcp://[::1]:PORT) or unix:PATH\n"
        "                         (default %s)\n"
        "    -t, --timeout MS     connect and per-request timeout (default %d)\n"
        "    -k, --token-file FILE  say Hello with the token on FILE's first line first\n"
        "                         (the daemon's auth-token or admin-token); default\n"
        "                         $MPCD_TOKEN_FILE\n"
        "    -j, --json           status: print the JSON document\n"
        "    -n, --count N        ping: requests to send; watch: refreshes before exiting\n"
        "    -i, --interval MS    pause between pings (default 1000, 0 = none) or refreshes\n"
        "    -h, --help           show this help\n"
        "\n"
        "EXIT STATUS\n"
        "    0 success, 1 the daemon refused (e.g. reload failed), 2 bad command line,\n"
        "    3 the daemon is unreachable or the connection failed.\n",
        MPC_CLIENT_DEFAULT_ADDRESS, MPC_CLIENT_DEFAULT_TIMEOUT_MS);
}

typedef struct {
    const char *connect;
    long timeout_ms;
    bool json;
    long count; /* -1: not given */
    long interval_ms;
    const char *token_file; /* NULL: no Hello */
} options_t;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Sleeps ms milliseconds unless Ctrl-C comes first. */
static void pause_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (!interrupted && nanosleep(&ts, &ts) != 0)
        ;
}

static void print_latency_row(const char *stage, const mpc_client_latency_t *l)
{
    printf("  %-8s %10llu %10.0f %10.0f %10.0f %10.0f\n", stage, (unsigned long long)l->count,
           l->p50_us, l->p90_us, l->p99_us, l->max_us);
}

static void print_latency_table(const mpc_client_status_t *st)
{
    printf("latency (us, last minute) %7s %10s %10s %10s %10s\n", "count", "p50", "p90", "p99",
           "max");
    print_latency_row("total", &st->total);
    print_latency_row("plan", &st->plan);
    print_latency_row("belief", &st->belief);
    print_latency_row("queue", &st->queue);
}

static void print_status(const char *address, const mpc_client_status_t *st)
{
    printf("mpcd %s at %s, up %.1f s, %s\n", st->version,
           address ? address : MPC_CLIENT_DEFAULT_ADDRESS, st->uptime_s,
           st->ready ? "ready" : "NOT READY");
    printf("model      %s version %llu\n", st->model_name[0] ? st->model_name : "(none)",
           (unsigned long long)st->model_version);
    printf("file       %s\n", st->model_path[0] ? st->model_path : "(none)");
    printf("requests   %llu (errors %llu, deadline cuts %llu, fallbacks %llu, overruns %llu)\n",
           (unsigned long long)st->requests, (unsigned long long)st->errors,
           (unsigned long long)st->deadline_cuts, (unsigned long long)st->fallbacks,
           (unsigned long long)st->overruns);
    printf("reloads    %llu ok, %llu failed%s%s\n", (unsigned long long)st->reloads_ok,
           (unsigned long long)st->reloads_failed,
           st->last_reload_error[0] ? "; last error: " : "", st->last_reload_error);
    print_latency_table(st);
    printf("sessions   %llu\n", (unsigned long long)st->sessions);
    if (st->n_session > 0)
        printf("  %8s  %-28s %10s %9s %12s %9s\n", "id", "client", "steps", "episodes",
               "last plan us", "surprise");
    for (size_t i = 0; i < st->n_session; i++) {
        const mpc_client_session_t *s = &st->session[i];
        printf("  %8llu  %-28s %10llu %9llu %12.0f %9.3f\n", (unsigned long long)s->session_id,
               s->client_name[0] ? s->client_name : "-", (unsigned long long)s->steps,
               (unsigned long long)s->episodes, s->last_plan_us, s->mean_surprise);
    }
}

static int cmd_status(mpc_client_t *c, const options_t *o)
{
    mpc_client_status_t st;
    int rc = mpc_client_status(c, &st);
    if (rc < 0)
        return tool_call_failed(prog, "status", c, rc);
    int exit_code = TOOL_EXIT_OK;
    if (o->json) {
        if (st.json[0] == '\0') {
            fprintf(stderr, "%s: status: the daemon sent no JSON document\n", prog);
            exit_code = TOOL_EXIT_REFUSED;
        } else {
            printf("%s\n", st.json);
        }
    } else {
        print_status(o->connect, &st);
    }
    mpc_client_status_free(&st);
    return exit_code;
}

/* Hello, with the token file's token when there is one (a connection that never says
 * Hello is closed after the daemon's hello-timeout-s: watch and ping run longer). NOT_READY
 * (no model yet) still gives the role. */
static int say_hello(mpc_client_t *c, const char *token_file)
{
    char token[TOKEN_FILE_MAX + 1] = "", err[512];
    if (token_file && token_file_read(token_file, token, sizeof token, NULL, err, sizeof err)) {
        fprintf(stderr, "%s: --token-file: %s\n", prog, err);
        return TOOL_EXIT_USAGE;
    }
    int rc = mpc_client_hello(c, "mpcctl", token, 0, 0, NULL);
    explicit_bzero(token, sizeof token);
    if (rc == MPC_CLIENT_EDAEMON &&
        !strcmp(mpc_client_daemon_code_name(mpc_client_daemon_code(c)), "NOT_READY"))
        return TOOL_EXIT_OK;
    return rc < 0 ? tool_call_failed(prog, "hello", c, rc) : TOOL_EXIT_OK;
}

static int cmd_reload(mpc_client_t *c, const char *path)
{
    /* The daemon resolves paths itself: send a local file's absolute path. */
    char abs[PATH_MAX];
    if (path && *path && path[0] != '/' && realpath(path, abs))
        path = abs;
    mpc_client_reload_t r;
    int rc = mpc_client_reload(c, path, &r);
    if (rc < 0)
        return tool_call_failed(prog, "reload", c, rc);
    printf("reloaded: model version %llu now serving (loaded in %.3f s)\n",
           (unsigned long long)r.model_version, r.load_s);
    return TOOL_EXIT_OK;
}

static int cmd_drain(mpc_client_t *c)
{
    int rc = mpc_client_drain(c);
    if (rc < 0)
        return tool_call_failed(prog, "drain", c, rc);
    printf("draining: no new sessions; the open ones are handed over, then mpcd exits\n");
    return TOOL_EXIT_OK;
}

static int cmd_ping(mpc_client_t *c, const options_t *o)
{
    long count = o->count >= 0 ? o->count : 5;
    latency_samples_t rtt = {0};
    int exit_code = TOOL_EXIT_OK;
    for (long i = 0; i < count && !interrupted; i++) {
        if (i > 0)
            pause_ms(o->interval_ms);
        if (interrupted)
            break;
        mpc_client_status_t st;
        double t0 = tool_now_s();
        int rc = mpc_client_status(c, &st);
        double ms = (tool_now_s() - t0) * 1e3;
        if (rc < 0) {
            exit_code = tool_call_failed(prog, "ping", c, rc);
            break;
        }
        mpc_client_status_free(&st);
        printf("status reply: seq=%ld time=%.3f ms\n", i + 1, ms);
        fflush(stdout);
        if (latency_add(&rtt, ms) < 0) {
            fprintf(stderr, "%s: out of memory\n", prog);
            exit_code = TOOL_EXIT_UNREACHABLE;
            break;
        }
    }
    latency_summary_t sum;
    latency_summarize(&rtt, &sum);
    printf("%zu of %ld requests answered, rtt min/avg/max = %.3f/%.3f/%.3f ms\n", sum.count,
           count, sum.min, sum.mean, sum.max);
    latency_free(&rtt);
    return exit_code;
}

static int cmd_watch(mpc_client_t *c, const options_t *o)
{
    bool tty = isatty(STDOUT_FILENO);
    long interval = o->interval_ms > 0 ? o->interval_ms : 1000;
    uint64_t last_requests = 0, last_overruns = 0;
    double last_t = 0.0;
    for (long n = 0; (o->count < 0 || n < o->count) && !interrupted; n++) {
        if (n > 0)
            pause_ms(interval);
        if (interrupted)
            break;
        mpc_client_status_t st;
        int rc = mpc_client_status(c, &st);
        if (rc < 0)
            return tool_call_failed(prog, "watch", c, rc);
        double t = tool_now_s();
        double rate = n > 0 ? (double)(st.requests - last_requests) / (t - last_t) : 0.0;
        if (tty)
            printf("\033[H\033[2J"); /* redraw in place on a terminal */
        printf("model %s v%llu  sessions %llu  requests %llu (%.1f/s)  overruns %llu (+%llu)\n",
               st.model_name[0] ? st.model_name : "(none)",
               (unsigned long long)st.model_version, (unsigned long long)st.sessions,
               (unsigned long long)st.requests, rate, (unsigned long long)st.overruns,
               (unsigned long long)(n > 0 ? st.overruns - last_overruns : 0));
        print_latency_table(&st);
        if (!tty)
            printf("\n");
        fflush(stdout);
        last_requests = st.requests;
        last_overruns = st.overruns;
        last_t = t;
        mpc_client_status_free(&st);
    }
    return TOOL_EXIT_OK;
}

/* Options that only make sense for one command are refused elsewhere. */
static int check_options(const char *cmd, const options_t *o, int n_args)
{
    bool status = !strcmp(cmd, "status"), reload = !strcmp(cmd, "reload");
    bool ping = !strcmp(cmd, "ping"), watch = !strcmp(cmd, "watch");
    bool drain = !strcmp(cmd, "drain");
    const char *bad = NULL;
    if (!status && !reload && !ping && !watch && !drain) {
        fprintf(stderr, "%s: unknown command '%s' (try --help)\n", prog, cmd);
        return -1;
    }
    if (o->json && !status)
        bad = "--json";
    else if (o->count >= 0 && !ping && !watch)
        bad = "--count";
    else if (n_args > (reload ? 1 : 0)) {
        fprintf(stderr, "%s: %s: too many arguments (try --help)\n", prog, cmd);
        return -1;
    }
    if (bad != NULL) {
        fprintf(stderr, "%s: %s does not apply to '%s'\n", prog, bad, cmd);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"connect", required_argument, NULL, 'c'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"count", required_argument, NULL, 'n'},
                                             {"interval", required_argument, NULL, 'i'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"token-file", required_argument, NULL, 'k'},
                                             {NULL, 0, NULL, 0}};
    options_t o = {
        .timeout_ms = MPC_CLIENT_DEFAULT_TIMEOUT_MS, .count = -1, .interval_ms = 1000};
    int opt;
    o.token_file = getenv("MPCD_TOKEN_FILE");
    if (o.token_file && !*o.token_file)
        o.token_file = NULL;
    while ((opt = getopt_long(argc, argv, "c:t:jn:i:hk:", longopts, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case 'c':
            o.connect = optarg;
            break;
        case 't':
            bad = tool_parse_long(prog, "--timeout", optarg, 1, 3600000, &o.timeout_ms);
            break;
        case 'j':
            o.json = true;
            break;
        case 'n':
            bad = tool_parse_long(prog, "--count", optarg, 1, 100000000, &o.count);
            break;
        case 'i':
            bad = tool_parse_long(prog, "--interval", optarg, 0, 3600000, &o.interval_ms);
            break;
        case 'k':
            o.token_file = optarg;
            break;
        case 'h':
            usage(stdout);
            return TOOL_EXIT_OK;
        default:
            bad = -1;
            fprintf(stderr, "(try --help)\n");
        }
        if (bad < 0)
            return TOOL_EXIT_USAGE;
    }
    if (optind >= argc) {
        fprintf(stderr,
                "%s: missing command: status, reload, drain, ping or watch (try --help)\n",
                prog);
        return TOOL_EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    int n_args = argc - optind - 1;
    if (check_options(cmd, &o, n_args) < 0)
        return TOOL_EXIT_USAGE;

    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    mpc_client_t *c;
    int rc = tool_connect(prog, o.connect, (int)o.timeout_ms, &c);
    if (rc != TOOL_EXIT_OK)
        return rc;
    if ((rc = say_hello(c, o.token_file)) != TOOL_EXIT_OK) {
        mpc_client_destroy(c);
        return rc;
    }
    if (!strcmp(cmd, "status"))
        rc = cmd_status(c, &o);
    else if (!strcmp(cmd, "reload"))
        rc = cmd_reload(c, n_args > 0 ? argv[optind + 1] : NULL);
    else if (!strcmp(cmd, "drain"))
        rc = cmd_drain(c);
    else if (!strcmp(cmd, "ping"))
        rc = cmd_ping(c, &o);
    else
        rc = cmd_watch(c, &o);
    mpc_client_destroy(c);
    return rc;
}
