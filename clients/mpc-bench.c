/*
 * mpc-bench.c: load generator for mpcd.
 *
 * N threads each open their own connection and session and send Step requests with random
 * observations, either closed loop (the next step as soon as the action arrives) or at a
 * fixed rate per client (declared in each Hello, at staggered phases), for a fixed
 * duration. Latency is measured by the client from sending the request to receiving the
 * action; a reply later than the step's deadline (as the client sees it) counts as a
 * deadline miss. A Hello the daemon refuses with OVERLOADED (admission control) counts as a
 * refused session, not an error. The report gives throughput, latency percentiles, misses,
 * errors by kind, sessions admitted and refused, and the daemon's plan statistics (including
 * the distribution of iterations per plan against the minimum the sessions were admitted
 * for), as text or JSON.
 */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "mpcclient.h"
#include "tools/latency.h"
#include "tools/tool.h"

static const char *prog = "mpc-bench";

#define N_ERROR_KINDS 10 /* index -rc of mpc_client_err_t, 0 unused */

/* The help text is laid out as printed. */
// clang-format off
static void usage(FILE *out)
{
    fprintf(out,
"NAME\n"
"    mpc-bench - load generator for mpcd\n"
"\n"
"SYNOPSIS\n"
"    mpc-bench [--connect ADDR] [--clients N] [--seconds S] [--rate HZ]\n"
"              [--deadline-ms MS] [--obs-dim N] [--noise X] [--timeout MS] [--seed N]\n"
"              [--json]\n"
"\n"
"DESCRIPTION\n"
"    Runs N concurrent simulated clients (one thread, connection and session each) that\n"
"    send Step requests with uniformly random observations in [-1, 1] for S seconds,\n"
"    closed loop (default) or at a fixed rate per client. Reports throughput, the\n"
"    client-side latency percentiles (request sent to action received), deadline misses\n"
"    (replies later than the step's deadline as seen by the client), errors by kind,\n"
"    sessions admitted and refused, and the daemon's plan statistics (iterations per\n"
"    plan: mean, p1, p50 and the fraction of replies that reached the minimum the\n"
"    session was admitted for, Welcome.min_iterations; deadline cuts, fallbacks).\n"
"\n"
"    Each client's Hello declares its step rate (--rate; 0 in closed loop, which the\n"
"    daemon takes as one step per control period of the model). A client whose Hello the\n"
"    daemon refuses with OVERLOADED (admission control: no capacity left for it) counts\n"
"    as a refused session, not as an error, and stops: it does not try again.\n"
"\n"
"    At a fixed rate the clients run at staggered phases, as independent robots would:\n"
"    all clients first open their sessions, then the A admitted ones take slots\n"
"    i = 0 .. A-1 and send their steps at t0 + (k + i/A) / HZ for k = 0, 1, ...\n"
"\n"
"OPTIONS\n"
"    -c, --connect ADDR     tcp://HOST:PORT or unix:PATH (default %s)\n"
"    -n, --clients N        concurrent clients (default 1)\n"
"    -s, --seconds S        duration (default 5)\n"
"    -r, --rate HZ          steps per second per client, at most 1000; 0 = closed loop\n"
"                           (default 0)\n"
"    -d, --deadline-ms MS   per-step deadline; 0 = the daemon's default (default 0)\n"
"    -o, --obs-dim N        observation size; 0 = the model's, from Welcome (default 0)\n"
"    -x, --noise X          exploration noise requested per step (default 0)\n"
"    -t, --timeout MS       connect and per-request timeout (default %d)\n"
"    -S, --seed N           seed of the random observations (default 1)\n"
"    -j, --json             print the report as one JSON object\n"
"    -h, --help             show this help\n"
"\n"
"EXIT STATUS\n"
"    0 at least one step was answered (refused sessions do not change this), 1 no step\n"
"    was answered (for example every session was refused), 2 bad command line, 3 the\n"
"    daemon is unreachable.\n",
            MPC_CLIENT_DEFAULT_ADDRESS, MPC_CLIENT_DEFAULT_TIMEOUT_MS);
}
// clang-format on

typedef struct {
    const char *connect;
    long clients;
    double seconds;
    double rate_hz;
    long deadline_ms;
    long obs_dim;
    double noise;
    long timeout_ms;
    long seed;
    bool json;
} options_t;

/* Paced clients spread their phases over the admitted ones: every client first opens its
 * session, then the admitted take slots 0..A-1 and step at phase0 + (k + slot/A) periods.
 * (Spread over all N instead, the admitted few of a refused crowd would bunch together.) */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t all_open;
    int total;    /* clients that will report (set lower if a thread could not start) */
    int opened;   /* clients past their first Hello */
    int admitted; /* slots handed out */
    double phase0;
} pacing_t;

/* One simulated client; everything it counts is merged after the run. */
typedef struct {
    const options_t *o;
    pacing_t *pacing;
    int index;
    int slot;              /* among the admitted clients (pacing) */
    double start_s, end_s; /* the run's, the same for every client */
    int connect_exit;      /* tool exit status of the first connect */
    bool refused;          /* a Hello was refused with OVERLOADED: the client stopped */
    latency_samples_t latency_ms;
    latency_samples_t iterations_per_reply; /* Action.iterations of every answered step */
    uint64_t ok, misses, deadline_cuts, fallbacks, iterations, plan_us, reconnects;
    uint64_t sessions_admitted, sessions_refused;
    uint64_t resumes;     /* sessions libmpcclient resumed (connection lost, drained) */
    uint64_t min_reached; /* replies with iterations >= min_iterations */
    uint64_t errors[N_ERROR_KINDS];
    uint32_t obs_size, deadline_us, min_iterations;
    char model_name[128];
    char last_error[256];
    pthread_t thread;
} worker_t;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* xorshift64*: cheap, per-thread, reproducible for a seed. */
static float random_unit(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (float)((x * 0x2545F4914F6CDD1DULL) >> 40) / (float)(1u << 24) * 2.0f - 1.0f;
}

static void sleep_until(double t_s)
{
    struct timespec ts = {.tv_sec = (time_t)t_s,
                          .tv_nsec = (long)((t_s - (double)(time_t)t_s) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0 && !interrupted)
        ;
}

static void count_error(worker_t *w, mpc_client_t *c, int rc)
{
    int kind = -rc;
    w->errors[kind > 0 && kind < N_ERROR_KINDS ? kind : 0]++;
    snprintf(w->last_error, sizeof(w->last_error), "%s", mpc_client_errmsg(c));
}

/* Connects and opens a session declaring the client's rate; returns 0 or the
 * libmpcclient error. A Hello refused with OVERLOADED is counted here and marks the
 * client refused; it is not an error. */
static int open_session(worker_t *w, mpc_client_t *c)
{
    char name[64];
    snprintf(name, sizeof(name), "mpc-bench/%d", w->index);
    int rc = mpc_client_connect(c, w->o->connect, (int)w->o->timeout_ms);
    mpc_client_welcome_t welcome;
    mpc_client_hello_t hello = {.client_name = name,
                                .observation_size = (uint32_t)w->o->obs_dim,
                                .rate_hz = w->o->rate_hz};
    if (rc == 0)
        rc = mpc_client_hello_with(c, &hello, &welcome);
    if (rc == MPC_CLIENT_EDAEMON && mpc_client_daemon_code(c) == MPC_CLIENT_DAEMON_OVERLOADED) {
        w->refused = true;
        w->sessions_refused++;
        snprintf(w->last_error, sizeof(w->last_error), "%s (retry after %u ms)",
                 mpc_client_errmsg(c), mpc_client_retry_after_ms(c));
    }
    if (rc == 0) {
        w->sessions_admitted++;
        w->obs_size = welcome.observation_size;
        w->deadline_us = w->o->deadline_ms > 0 ? (uint32_t)(w->o->deadline_ms * 1000)
                                               : welcome.default_deadline_us;
        w->min_iterations = welcome.min_iterations;
        snprintf(w->model_name, sizeof(w->model_name), "%s", welcome.model_name);
    }
    return rc;
}

/* Waits until every client has opened its session (or been refused); an admitted one gets
 * its slot. */
static void wait_all_open(worker_t *w, bool admitted)
{
    pacing_t *p = w->pacing;
    pthread_mutex_lock(&p->mu);
    if (admitted)
        w->slot = p->admitted++;
    if (++p->opened >= p->total) {
        p->phase0 = tool_now_s();
        pthread_cond_broadcast(&p->all_open);
    }
    while (p->opened < p->total)
        pthread_cond_wait(&p->all_open, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* The time before client w's first paced step: its steps lie at phase0 + (k + slot/A)
 * periods (A admitted clients), so independent clients are not synchronised. */
static double first_slot(const worker_t *w, double period)
{
    const pacing_t *p = w->pacing;
    double phase = p->phase0 + period * (double)w->slot / (double)p->admitted;
    double now = tool_now_s();
    double k = now > phase ? ceil((now - phase) / period) : 0.0;
    return phase + k * period;
}

static void run_steps(worker_t *w, mpc_client_t *c)
{
    uint64_t rng = (uint64_t)w->o->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)w->index + 1;
    float *obs = calloc(w->obs_size ? w->obs_size : 1, sizeof(float));
    if (obs == NULL)
        return;
    double period = w->o->rate_hz > 0 ? 1.0 / w->o->rate_hz : 0.0;
    double next = period > 0 ? first_slot(w, period) - period : 0.0; /* += period below */
    mpc_client_step_t step = {.reset = true,
                              .observation = obs,
                              .observation_size = w->obs_size,
                              .deadline_us = w->o->deadline_ms > 0 ? w->deadline_us : 0,
                              .exploration_noise = (float)w->o->noise};
    mpc_client_action_t act;
    while (!interrupted) {
        if (period > 0) {
            next += period;
            if (next >= w->end_s)
                break;
            sleep_until(next);
        }
        double t0 = tool_now_s();
        if (t0 >= w->end_s)
            break;
        for (uint32_t i = 0; i < w->obs_size; i++)
            obs[i] = random_unit(&rng);
        int rc = mpc_client_step(c, &step, &act);
        double ms = (tool_now_s() - t0) * 1e3;
        step.seq++;
        if (rc < 0) {
            count_error(w, c, rc);
            if (!mpc_client_connected(c)) {
                /* The stream is gone: start over with a new session after a short pause. */
                sleep_until(tool_now_s() + 0.1);
                w->reconnects++;
                if (open_session(w, c) < 0) {
                    if (w->refused)
                        break; /* counted by open_session; a refused client stops */
                    count_error(w, c, MPC_CLIENT_ECONNECT);
                }
                step.reset = true;
            }
            continue;
        }
        step.reset = false;
        w->ok++;
        latency_add(&w->latency_ms, ms);
        if (w->deadline_us > 0 && ms * 1e3 > (double)w->deadline_us)
            w->misses++;
        w->deadline_cuts += act.deadline_cut;
        w->fallbacks += act.fallback;
        w->iterations += act.iterations;
        latency_add(&w->iterations_per_reply, (double)act.iterations);
        w->min_reached += act.iterations >= w->min_iterations;
        w->plan_us += act.plan_us;
    }
    free(obs);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    mpc_client_t *c;
    if (mpc_client_create(&c) < 0 || mpc_client_set_timeout(c, (int)w->o->timeout_ms) < 0) {
        w->connect_exit = TOOL_EXIT_UNREACHABLE;
        wait_all_open(w, false);
        return NULL;
    }
    int rc = open_session(w, c);
    wait_all_open(w, rc >= 0 && !w->refused);
    if (w->refused) {
        /* Counted as a refused session; the client stops without trying again. */
    } else if (rc < 0) {
        count_error(w, c, rc);
        w->connect_exit = rc == MPC_CLIENT_EDAEMON ? TOOL_EXIT_REFUSED : TOOL_EXIT_UNREACHABLE;
    } else {
        run_steps(w, c);
    }
    w->resumes = mpc_client_resumes(c);
    mpc_client_destroy(c);
    return NULL;
}

typedef struct {
    double wall_s;
    latency_summary_t lat;
    latency_summary_t iter; /* iterations per reply */
    double iter_p1;
    uint64_t ok, misses, deadline_cuts, fallbacks, iterations, plan_us, reconnects, errors;
    uint64_t sessions_admitted, sessions_refused, min_reached, resumes;
    uint64_t errors_by_kind[N_ERROR_KINDS];
} totals_t;

static void sum_workers(worker_t *w, long n, latency_samples_t *all,
                        latency_samples_t *all_iter, totals_t *t)
{
    for (long i = 0; i < n; i++) {
        latency_merge(all, &w[i].latency_ms);
        latency_merge(all_iter, &w[i].iterations_per_reply);
        t->ok += w[i].ok;
        t->sessions_admitted += w[i].sessions_admitted;
        t->sessions_refused += w[i].sessions_refused;
        t->resumes += w[i].resumes;
        t->min_reached += w[i].min_reached;
        t->misses += w[i].misses;
        t->deadline_cuts += w[i].deadline_cuts;
        t->fallbacks += w[i].fallbacks;
        t->iterations += w[i].iterations;
        t->plan_us += w[i].plan_us;
        t->reconnects += w[i].reconnects;
        for (int k = 0; k < N_ERROR_KINDS; k++) {
            t->errors_by_kind[k] += w[i].errors[k];
            t->errors += w[i].errors[k];
        }
    }
    latency_summarize(all, &t->lat);
    latency_summarize(all_iter, &t->iter);
    t->iter_p1 = latency_percentile(all_iter->v, all_iter->n, 1.0);
}

static double per_ok(uint64_t value, uint64_t ok)
{
    return ok ? (double)value / (double)ok : 0.0;
}

static void print_text(const options_t *o, const worker_t *w0, const totals_t *t)
{
    printf("mpc-bench: %ld client(s), %.1f s, %s, model '%s', obs %u, deadline %.1f ms\n",
           o->clients, t->wall_s, o->rate_hz > 0 ? "fixed rate" : "closed loop", w0->model_name,
           w0->obs_size, w0->deadline_us / 1e3);
    printf("steps        %llu ok, %.1f steps/s\n", (unsigned long long)t->ok,
           t->ok / t->wall_s);
    printf("latency ms   p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  (min %.3f, mean %.3f)\n",
           t->lat.p50, t->lat.p90, t->lat.p99, t->lat.max, t->lat.min, t->lat.mean);
    printf("deadline     %llu misses (%.2f%%), daemon cut %llu, fallbacks %llu\n",
           (unsigned long long)t->misses, 100.0 * per_ok(t->misses, t->ok),
           (unsigned long long)t->deadline_cuts, (unsigned long long)t->fallbacks);
    printf("plan         %.1f iterations, %.0f us per step (daemon's figures)\n",
           per_ok(t->iterations, t->ok), per_ok(t->plan_us, t->ok));
    printf("iterations   p1 %.0f  p50 %.0f; %.2f%% of replies reached the minimum of %u\n",
           t->iter_p1, t->iter.p50, 100.0 * per_ok(t->min_reached, t->ok), w0->min_iterations);
    printf("sessions     %llu admitted, %llu refused (OVERLOADED), %llu resumed\n",
           (unsigned long long)t->sessions_admitted, (unsigned long long)t->sessions_refused,
           (unsigned long long)t->resumes);
    printf("errors       %llu", (unsigned long long)t->errors);
    for (int k = 1; k < N_ERROR_KINDS; k++)
        if (t->errors_by_kind[k])
            printf(" %s=%llu", mpc_client_err_name(-k),
                   (unsigned long long)t->errors_by_kind[k]);
    printf(", reconnects %llu\n", (unsigned long long)t->reconnects);
}

static void print_json(const options_t *o, const worker_t *w0, const totals_t *t)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "clients", (double)o->clients);
    cJSON_AddNumberToObject(j, "seconds", t->wall_s);
    cJSON_AddStringToObject(j, "mode", o->rate_hz > 0 ? "rate" : "closed_loop");
    cJSON_AddNumberToObject(j, "rate_hz", o->rate_hz);
    cJSON_AddStringToObject(j, "model", w0->model_name);
    cJSON_AddNumberToObject(j, "obs_dim", w0->obs_size);
    cJSON_AddNumberToObject(j, "deadline_ms", w0->deadline_us / 1e3);
    cJSON_AddNumberToObject(j, "steps", (double)t->ok);
    cJSON_AddNumberToObject(j, "throughput_hz", t->ok / t->wall_s);
    cJSON *lat = cJSON_AddObjectToObject(j, "latency_ms");
    cJSON_AddNumberToObject(lat, "min", t->lat.min);
    cJSON_AddNumberToObject(lat, "mean", t->lat.mean);
    cJSON_AddNumberToObject(lat, "p50", t->lat.p50);
    cJSON_AddNumberToObject(lat, "p90", t->lat.p90);
    cJSON_AddNumberToObject(lat, "p99", t->lat.p99);
    cJSON_AddNumberToObject(lat, "max", t->lat.max);
    cJSON_AddNumberToObject(j, "deadline_misses", (double)t->misses);
    cJSON_AddNumberToObject(j, "deadline_cuts", (double)t->deadline_cuts);
    cJSON_AddNumberToObject(j, "fallbacks", (double)t->fallbacks);
    cJSON_AddNumberToObject(j, "mean_iterations", per_ok(t->iterations, t->ok));
    cJSON_AddNumberToObject(j, "mean_plan_us", per_ok(t->plan_us, t->ok));
    cJSON_AddNumberToObject(j, "iterations_p1", t->iter_p1);
    cJSON_AddNumberToObject(j, "iterations_p50", t->iter.p50);
    cJSON_AddNumberToObject(j, "min_iterations", w0->min_iterations);
    cJSON_AddNumberToObject(j, "min_iterations_reached_fraction",
                            per_ok(t->min_reached, t->ok));
    cJSON_AddNumberToObject(j, "sessions_admitted", (double)t->sessions_admitted);
    cJSON_AddNumberToObject(j, "sessions_refused", (double)t->sessions_refused);
    cJSON_AddNumberToObject(j, "resumes", (double)t->resumes);
    cJSON_AddNumberToObject(j, "errors", (double)t->errors);
    cJSON *kinds = cJSON_AddObjectToObject(j, "errors_by_kind");
    for (int k = 1; k < N_ERROR_KINDS; k++)
        if (t->errors_by_kind[k])
            cJSON_AddNumberToObject(kinds, mpc_client_err_name(-k),
                                    (double)t->errors_by_kind[k]);
    cJSON_AddNumberToObject(j, "reconnects", (double)t->reconnects);
    char *text = cJSON_PrintUnformatted(j);
    if (text != NULL)
        printf("%s\n", text);
    free(text);
    cJSON_Delete(j);
}

static int parse_options(int argc, char **argv, options_t *o)
{
    static const struct option longopts[] = {{"connect", required_argument, NULL, 'c'},
                                             {"clients", required_argument, NULL, 'n'},
                                             {"seconds", required_argument, NULL, 's'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"deadline-ms", required_argument, NULL, 'd'},
                                             {"obs-dim", required_argument, NULL, 'o'},
                                             {"noise", required_argument, NULL, 'x'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"seed", required_argument, NULL, 'S'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int opt, bad = 0;
    while (bad == 0 &&
           (opt = getopt_long(argc, argv, "c:n:s:r:d:o:x:t:S:jh", longopts, NULL)) != -1) {
        /* One option a line. */
        // clang-format off
        switch (opt) {
        case 'c': o->connect = optarg; break;
        case 'n': bad = tool_parse_long(prog, "--clients", optarg, 1, 1024, &o->clients); break;
        case 's': bad = tool_parse_double(prog, "--seconds", optarg, 0.01, 86400, &o->seconds); break;
        case 'r': bad = tool_parse_double(prog, "--rate", optarg, 0, 1000, &o->rate_hz); break;
        case 'd': bad = tool_parse_long(prog, "--deadline-ms", optarg, 0, 60000, &o->deadline_ms); break;
        case 'o': bad = tool_parse_long(prog, "--obs-dim", optarg, 0, 1 << 20, &o->obs_dim); break;
        case 'x': bad = tool_parse_double(prog, "--noise", optarg, 0, 10, &o->noise); break;
        case 't': bad = tool_parse_long(prog, "--timeout", optarg, 1, 3600000, &o->timeout_ms); break;
        case 'S': bad = tool_parse_long(prog, "--seed", optarg, 0, 1L << 62, &o->seed); break;
        case 'j': o->json = true; break;
        case 'h': usage(stdout); exit(TOOL_EXIT_OK);
        default: fprintf(stderr, "(try --help)\n"); bad = -1;
        }
        // clang-format on
    }
    if (bad == 0 && optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (try --help)\n", prog, argv[optind]);
        bad = -1;
    }
    return bad;
}

int main(int argc, char **argv)
{
    options_t o = {
        .clients = 1, .seconds = 5, .timeout_ms = MPC_CLIENT_DEFAULT_TIMEOUT_MS, .seed = 1};
    if (parse_options(argc, argv, &o) < 0)
        return TOOL_EXIT_USAGE;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    worker_t *w = calloc((size_t)o.clients, sizeof(*w));
    if (w == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return TOOL_EXIT_UNREACHABLE;
    }
    double start = tool_now_s();
    pacing_t pacing = {.mu = PTHREAD_MUTEX_INITIALIZER,
                       .all_open = PTHREAD_COND_INITIALIZER,
                       .total = (int)o.clients};
    long started = 0;
    for (; started < o.clients; started++) {
        w[started] = (worker_t){.o = &o,
                                .pacing = &pacing,
                                .index = (int)started,
                                .start_s = start,
                                .end_s = start + o.seconds};
        if (pthread_create(&w[started].thread, NULL, worker_main, &w[started]) != 0) {
            fprintf(stderr, "%s: cannot start client thread %ld\n", prog, started);
            break;
        }
    }
    pthread_mutex_lock(&pacing.mu); /* the clients that did start are all there will be */
    pacing.total = (int)started;
    if (pacing.opened >= pacing.total) {
        pacing.phase0 = tool_now_s();
        pthread_cond_broadcast(&pacing.all_open);
    }
    pthread_mutex_unlock(&pacing.mu);
    for (long i = 0; i < started; i++)
        pthread_join(w[i].thread, NULL);
    o.clients = started;

    totals_t t = {.wall_s = tool_now_s() - start};
    latency_samples_t all = {0}, all_iter = {0};
    sum_workers(w, started, &all, &all_iter, &t);
    int exit_code = TOOL_EXIT_OK;
    /* The report names the model of the first admitted client; when every client was
     * refused (connect_exit is OK for those) the report still shows the refusals. */
    const worker_t *first_ok = &w[0];
    for (long i = started - 1; i >= 0; i--)
        if (w[i].connect_exit == TOOL_EXIT_OK)
            first_ok = &w[i];
    for (long i = started - 1; i >= 0; i--)
        if (w[i].sessions_admitted > 0)
            first_ok = &w[i];
    if (started == 0 || first_ok->connect_exit != TOOL_EXIT_OK) {
        fprintf(stderr, "%s: cannot reach mpcd: %s\n", prog,
                started ? w[0].last_error : "no client started");
        exit_code = started ? w[0].connect_exit : TOOL_EXIT_UNREACHABLE;
    } else {
        if (o.json)
            print_json(&o, first_ok, &t);
        else
            print_text(&o, first_ok, &t);
        if (t.ok == 0) {
            fprintf(stderr, "%s: no step was answered; last error: %s\n", prog,
                    first_ok->last_error);
            exit_code = TOOL_EXIT_REFUSED;
        }
    }
    for (long i = 0; i < started; i++) {
        latency_free(&w[i].latency_ms);
        latency_free(&w[i].iterations_per_reply);
    }
    latency_free(&all);
    latency_free(&all_iter);
    free(w);
    return exit_code;
}
