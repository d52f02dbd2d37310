/*
 * mpc-sim.c: the MuJoCo simulator client of mpcd.
 *
 * Runs episodes of one task (task_*.c) under a policy: uniform random actions, zero, or
 * the daemon's plans (--policy mpcd, one Step per control step). Optionally paces the
 * loop at the control period (--realtime), adds exploration noise, records each episode
 * as an .npz file for the trainer (--record, common/EPISODES.md) and logs every step to a
 * CSV file. Prints each episode's return and, for mpcd, the reply latency distribution.
 *
 * By default simulated time stops while the daemon thinks. --no-wait, --delay-steps,
 * --follow and --drop make it a robot whose physics runs on (timeline.h): physics step
 * by physics step, the action in force comes from the replies that have arrived.
 *
 * --obs pixels also renders every observation as a camera image (render.h), recorded
 * next to the state (--record) and written as pictures (--save-frames); with --policy
 * mpcd the images are what the daemon's pixel model observes (Step.image). --obs both
 * renders and records them too but sends the daemon the state.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "episode_file.h"
#include "frame_file.h"
#include "policy.h"
#include "render.h"
#include "timeline.h"
#include "tools/latency.h"
#include "tools/tool.h"

static const char *prog = "mpc-sim";

/* Beyond tool.h's statuses. */
enum { SIM_EXIT_FAILED = 4, SIM_EXIT_INTERRUPTED = 130 };

/* --image-size: PlaNet's 64 by default. */
#define SIM_DEFAULT_IMAGE_SIZE 64
#define SIM_MIN_IMAGE_SIZE     8

/* The help text is laid out as it prints. */
// clang-format off
static void usage(FILE *out)
{
    fprintf(out,
"NAME\n"
"    mpc-sim - MuJoCo simulator client of mpcd\n"
"\n"
"SYNOPSIS\n"
"    mpc-sim --task TASK [--policy random|zero|mpcd] [--episodes N] [--seed S]\n"
"            [--record DIR] [--csv FILE] [--max-steps N] [--explore SCALE]\n"
"            [--connect ADDR] [--deadline-ms MS] [--timeout MS] [--realtime] [--quiet]\n"
"            [--no-wait] [--follow] [--delay-steps K [--uncompensated]] [--drop P]\n"
"            [--no-resume] [--obs state|pixels|both [--image-size N] [--save-frames DIR]]\n"
"    mpc-sim --list-tasks\n"
"    mpc-sim --print-mjcf TASK\n"
"\n"
"DESCRIPTION\n"
"    Simulates TASK in MuJoCo for N episodes of 1000 physics steps. Each control step\n"
"    applies one action for the task's action repeat and earns the sum of the physics\n"
"    steps' rewards (each in [0, 1], dm_control style), so a return is at most 1000.\n"
"    Actions come from the policy: 'random' (uniform in the bounds), 'zero', or 'mpcd':\n"
"    the daemon at ADDR is sent, every control step, the observation, the previous\n"
"    reward, the reset flag on an episode's first step and the optional deadline, and its\n"
"    action is applied. Each episode's return is printed, and for mpcd the distribution\n"
"    of reply latency measured here (request sent to action received). A reply later\n"
"    than the control period is counted as late. A progress line is shown on a terminal.\n"
"\n"
"TASKS\n"
"    cartpole-swingup  cartpole-balance  pendulum-swingup  reacher-easy  cheetah-run\n"
"    (--list-tasks shows action repeats, control periods and observation vectors)\n"
"\n"
"OPTIONS\n"
"    -t, --task TASK        the task (required)\n"
"    -p, --policy P         random, zero or mpcd (default random)\n"
"    -n, --episodes N       episodes to run (default 1)\n"
"    -s, --seed S           seed of initial states, random actions and noise, and of the\n"
"                           daemon's draws for the session (Hello.seed), so an episode\n"
"                           repeats exactly when no plan is cut by its deadline (default 1)\n"
"    -r, --record DIR       write each episode to DIR/<task>-<time>-<seq>.npz for the\n"
"                           trainer (observation [T+1,O], action [T,A], reward [T],\n"
"                           float32; with --obs pixels or both image [T+1,N,N,3] uint8;\n"
"                           see common/EPISODES.md); DIR is created if missing\n"
"        --csv FILE         log every control step: episode, step, time, observation,\n"
"                           action, reward, latency and plan statistics\n"
"    -m, --max-steps N      end episodes after N control steps (default: 1000 physics\n"
"                           steps / action repeat)\n"
"    -x, --explore SCALE    add Gaussian noise of std SCALE * half the action range to\n"
"                           each action (after the policy), clipped to the bounds;\n"
"                           with --policy mpcd the daemon adds it (Step.exploration_noise)\n"
"                           so its belief follows the action really applied (0 .. 10)\n"
"    -c, --connect ADDR     mpcd's address, tcp://HOST:PORT or unix:PATH\n"
"                           (default %s)\n"
"    -d, --deadline-ms MS   per-step planning deadline sent to mpcd (default: the\n"
"                           daemon's)\n"
"        --timeout MS       connect and per-step reply timeout (default %d)\n"
"        --no-resume        fail when the connection to mpcd is lost; by default the\n"
"                           session is resumed (libmpcclient: connect again, say Hello\n"
"                           with the recent steps, send the step again) and counted\n"
"    -R, --realtime         pace control steps at the control period on the wall clock;\n"
"                           a late reply delays the simulation and is counted\n"
"\n"
"    A robot's physics does not stop while mpcd thinks. These make the simulation behave\n"
"    so (mpcd only; physics step by physics step, the action in force is the newest\n"
"    reply's that has arrived and taken effect):\n"
"        --no-wait          physics runs on while a request is in flight: for the physics\n"
"                           steps the measured reply latency covers, the action in force\n"
"                           holds (or the followed plan goes on); a reply later than a\n"
"                           control period takes effect at the next control step\n"
"        --follow           follow each reply's whole plan (Action.plan, libmpcclient's\n"
"                           follower) instead of holding its action: between replies, and\n"
"                           when one is late or lost, the plan's next rows are applied\n"
"        --delay-steps K    apply each reply K control steps after its observation, and\n"
"                           send Step.delay_steps = K so that mpcd plans for that moment\n"
"                           (0 .. 64; at most mpcd's planner horizon)\n"
"        --uncompensated    with --delay-steps: send delay_steps = 0 (what the delay costs\n"
"                           a controller that ignores it)\n"
"        --drop P           lose a fraction P of the replies at random (seeded by --seed),\n"
"                           as a flaky network would; a lost reply is never applied\n"
"\n"
"    Pixel observations (PlaNet's modality; rendered headless with EGL, see README.md):\n"
"        --obs KIND         state (default), pixels or both. pixels: also render every\n"
"                           observation (after reset and after each control step) as\n"
"                           an N x N RGB image from dm_control's camera 0 of the task\n"
"                           (cartpole, pendulum, reacher: 'fixed'; cheetah: 'side').\n"
"                           The state is still observed and recorded. With --policy\n"
"                           mpcd each Step sends the image (the model must be a pixel\n"
"                           model of N x N x 3 images), not the state. both: render\n"
"                           and record images as pixels does, but send mpcd the state\n"
"                           (a state model drives while the episodes record what a\n"
"                           camera saw: the data that distils a pixel model,\n"
"                           model/train/README.md)\n"
"        --image-size N     image side in pixels (default 64; 8 .. %d)\n"
"        --save-frames DIR  also write every frame as a binary PPM picture,\n"
"                           DIR/<task>-e<episode>-t<step>.ppm; DIR is created if missing\n"
"    -q, --quiet            no progress line\n"
"        --list-tasks       list the tasks and exit\n"
"        --print-mjcf TASK  print the task's MuJoCo model (MJCF) and exit\n"
"    -h, --help             show this help\n"
"\n"
"OUTPUT\n"
"    One line per episode (return, control steps, wall time; for mpcd also latency\n"
"    percentiles and late replies), then a summary. Diagnostics go to stderr.\n"
"\n"
"EXIT STATUS\n"
"    0 every episode ran, 1 mpcd refused (an Error reply, a model whose sizes do not fit\n"
"    the task, a non-finite action), 2 bad command line, 3 mpcd unreachable (cannot\n"
"    connect, timed out, connection lost, malformed reply), 4 simulation or recording\n"
"    failed (also: --obs pixels where nothing can render), 130 interrupted (the unfinished\n"
"    episode is not recorded).\n"
"\n"
"EXAMPLES\n"
"    mpc-sim --task cartpole-swingup --policy random --episodes 3\n"
"    mpc-sim --task cartpole-swingup --policy mpcd --connect tcp://127.0.0.1:7070 \\\n"
"            --deadline-ms 40 --realtime --record episodes/ --explore 0.3\n"
"    mpc-sim --task cartpole-swingup --policy mpcd --no-wait --follow --drop 0.2\n"
"    mpc-sim --task cheetah-run --obs pixels --record episodes/ --save-frames frames/\n",
            MPC_CLIENT_DEFAULT_ADDRESS, MPC_CLIENT_DEFAULT_TIMEOUT_MS, SIM_RENDER_MAX_SIZE);
}
// clang-format on

typedef struct {
    const sim_task_t *task;
    sim_policy_kind_t policy;
    long episodes;
    long seed;
    const char *record;
    const char *csv;
    long max_steps; /* 0: full episodes */
    double explore;
    const char *connect;
    double deadline_ms;
    long timeout_ms;
    bool realtime;
    bool quiet;
    bool no_wait, follow, uncompensated, no_resume;
    long delay_steps;
    double drop;
    bool pixels;             /* --obs pixels or both: render every observation */
    bool send_state;         /* --obs both: mpcd gets the state although images render */
    long image_size;         /* N: images are N x N */
    const char *save_frames; /* directory of PPM frames, or NULL */
} options_t;

/* Whether physics runs on across replies (timeline.h) instead of stopping for them. */
static bool timed(const options_t *o)
{
    return o->no_wait || o->follow || o->delay_steps > 0 || o->drop > 0;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void list_tasks(void)
{
    printf("%-18s %6s %6s %7s %9s  %s\n", "TASK", "OBS", "ACT", "REPEAT", "PERIOD",
           "OBSERVATION");
    for (int i = 0; sim_tasks[i]; i++) {
        const sim_task_t *t = sim_tasks[i];
        sim_env_t *e;
        char err[512];
        double period = 0;
        if (sim_env_create(t, &e, err, (int)sizeof(err)) == 0) {
            period = sim_env_control_period(e);
            sim_env_destroy(e);
        }
        printf("%-18s %6d %6d %7d %7.3f s  %s\n", t->name, t->obs_dim, t->act_dim,
               t->action_repeat, period, t->obs_doc);
    }
}

static const sim_task_t *find_task(const char *name)
{
    const sim_task_t *t = sim_task_find(name);
    if (t == NULL) {
        fprintf(stderr, "%s: --task: unknown task '%s'; one of:", prog, name);
        for (int i = 0; sim_tasks[i]; i++)
            fprintf(stderr, " %s", sim_tasks[i]->name);
        fprintf(stderr, "\n");
    }
    return t;
}

/* Returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, options_t *o)
{
    enum {
        OPT_CSV = 256,
        OPT_TIMEOUT,
        OPT_LIST,
        OPT_MJCF,
        OPT_NO_WAIT,
        OPT_FOLLOW,
        OPT_DELAY,
        OPT_UNCOMPENSATED,
        OPT_DROP,
        OPT_NO_RESUME,
        OPT_OBS,
        OPT_IMAGE_SIZE,
        OPT_SAVE_FRAMES
    };
    static const struct option longopts[] = {
        {"task", required_argument, NULL, 't'},
        {"policy", required_argument, NULL, 'p'},
        {"episodes", required_argument, NULL, 'n'},
        {"seed", required_argument, NULL, 's'},
        {"record", required_argument, NULL, 'r'},
        {"csv", required_argument, NULL, OPT_CSV},
        {"max-steps", required_argument, NULL, 'm'},
        {"explore", required_argument, NULL, 'x'},
        {"connect", required_argument, NULL, 'c'},
        {"deadline-ms", required_argument, NULL, 'd'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"realtime", no_argument, NULL, 'R'},
        {"quiet", no_argument, NULL, 'q'},
        {"no-wait", no_argument, NULL, OPT_NO_WAIT},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {"delay-steps", required_argument, NULL, OPT_DELAY},
        {"uncompensated", no_argument, NULL, OPT_UNCOMPENSATED},
        {"drop", required_argument, NULL, OPT_DROP},
        {"no-resume", no_argument, NULL, OPT_NO_RESUME},
        {"obs", required_argument, NULL, OPT_OBS},
        {"image-size", required_argument, NULL, OPT_IMAGE_SIZE},
        {"save-frames", required_argument, NULL, OPT_SAVE_FRAMES},
        {"list-tasks", no_argument, NULL, OPT_LIST},
        {"print-mjcf", required_argument, NULL, OPT_MJCF},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (options_t){.policy = SIM_POLICY_RANDOM,
                     .episodes = 1,
                     .seed = 1,
                     .timeout_ms = MPC_CLIENT_DEFAULT_TIMEOUT_MS,
                     .image_size = SIM_DEFAULT_IMAGE_SIZE};
    bool image_size_given = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "t:p:n:s:r:m:x:c:d:Rqh", longopts, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 't':
            if ((o->task = find_task(optarg)) == NULL)
                return TOOL_EXIT_USAGE;
            break;
        case 'p':
            if (sim_policy_parse(optarg, &o->policy) < 0) {
                fprintf(stderr, "%s: --policy: expected random, zero or mpcd, got '%s'\n", prog,
                        optarg);
                return TOOL_EXIT_USAGE;
            }
            break;
        case 'n':
            bad = tool_parse_long(prog, "--episodes", optarg, 1, 1000000, &o->episodes);
            break;
        case 's':
            bad = tool_parse_long(prog, "--seed", optarg, 0, LONG_MAX, &o->seed);
            break;
        case 'r':
            o->record = optarg;
            break;
        case OPT_CSV:
            o->csv = optarg;
            break;
        case 'm':
            bad = tool_parse_long(prog, "--max-steps", optarg, 1, SIM_EPISODE_PHYSICS_STEPS,
                                  &o->max_steps);
            break;
        case 'x':
            bad = tool_parse_double(prog, "--explore", optarg, 0, 10, &o->explore);
            break;
        case 'c':
            o->connect = optarg;
            break;
        case 'd':
            bad = tool_parse_double(prog, "--deadline-ms", optarg, 0, 60000, &o->deadline_ms);
            break;
        case OPT_TIMEOUT:
            bad = tool_parse_long(prog, "--timeout", optarg, 1, 3600000, &o->timeout_ms);
            break;
        case 'R':
            o->realtime = true;
            break;
        case 'q':
            o->quiet = true;
            break;
        case OPT_NO_WAIT:
            o->no_wait = true;
            break;
        case OPT_FOLLOW:
            o->follow = true;
            break;
        case OPT_DELAY:
            bad = tool_parse_long(prog, "--delay-steps", optarg, 0, 64, &o->delay_steps);
            break;
        case OPT_UNCOMPENSATED:
            o->uncompensated = true;
            break;
        case OPT_DROP:
            bad = tool_parse_double(prog, "--drop", optarg, 0, 1, &o->drop);
            break;
        case OPT_NO_RESUME:
            o->no_resume = true;
            break;
        case OPT_OBS:
            if (strcmp(optarg, "state") == 0 || strcmp(optarg, "pixels") == 0 ||
                strcmp(optarg, "both") == 0) {
                o->pixels = optarg[0] != 's';
                o->send_state = optarg[0] != 'p';
            } else {
                fprintf(stderr, "%s: --obs: expected state, pixels or both, got '%s'\n", prog,
                        optarg);
                return TOOL_EXIT_USAGE;
            }
            break;
        case OPT_IMAGE_SIZE:
            bad = tool_parse_long(prog, "--image-size", optarg, SIM_MIN_IMAGE_SIZE,
                                  SIM_RENDER_MAX_SIZE, &o->image_size);
            image_size_given = true;
            break;
        case OPT_SAVE_FRAMES:
            o->save_frames = optarg;
            break;
        case OPT_LIST:
            list_tasks();
            return TOOL_EXIT_OK;
        case OPT_MJCF: {
            const sim_task_t *t = find_task(optarg);
            if (t == NULL)
                return TOOL_EXIT_USAGE;
            fputs(t->mjcf, stdout);
            return TOOL_EXIT_OK;
        }
        case 'h':
            usage(stdout);
            return TOOL_EXIT_OK;
        default:
            fprintf(stderr, "Try '%s --help'.\n", prog);
            return TOOL_EXIT_USAGE;
        }
        if (bad)
            return TOOL_EXIT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
        return TOOL_EXIT_USAGE;
    }
    if (o->task == NULL) {
        fprintf(stderr, "%s: --task is required (see --list-tasks)\n", prog);
        return TOOL_EXIT_USAGE;
    }
    if (o->policy != SIM_POLICY_MPCD && timed(o)) {
        fprintf(stderr,
                "%s: --no-wait, --follow, --delay-steps and --drop need --policy mpcd\n", prog);
        return TOOL_EXIT_USAGE;
    }
    if (o->uncompensated && o->delay_steps == 0) {
        fprintf(stderr, "%s: --uncompensated needs --delay-steps K > 0\n", prog);
        return TOOL_EXIT_USAGE;
    }
    if (!o->pixels && (image_size_given || o->save_frames)) {
        fprintf(stderr, "%s: --image-size and --save-frames need --obs pixels or both\n", prog);
        return TOOL_EXIT_USAGE;
    }
    if (o->policy != SIM_POLICY_MPCD && (o->connect || o->deadline_ms > 0))
        fprintf(stderr,
                "%s: note: --connect and --deadline-ms only matter with --policy mpcd\n", prog);
    return -1;
}

/* Everything one run needs, allocated before the first episode. */
typedef struct {
    const options_t *o;
    sim_env_t *env;
    sim_policy_t policy;
    sim_rng_t env_rng;
    double low[MPC_CLIENT_MAX_ACTION], high[MPC_CLIENT_MAX_ACTION];
    int steps, obs_dim, act_dim;
    double period_s;
    float *obs, *act, *rew; /* (steps+1) x O, steps x A, steps */
    FILE *csv;
    unsigned seq;                 /* next episode file number */
    latency_samples_t ep_latency; /* this episode's reply latencies (ms) */
    latency_samples_t latency;    /* every reply's */
    double *returns;
    long done; /* finished episodes */
    unsigned long late, misses, deadline_cuts, fallbacks, decisions, iterations;
    bool progress;
    double progress_t;
    /* physics that runs on (timed(o)) */
    sim_timeline_t timeline;
    sim_rng_t drop_rng;
    float *ahead; /* [delay_steps, A] applied_actions sent */
    unsigned long dropped, applied_sent;
    unsigned resumes_seen; /* the client's resumes printed so far */
    /* --obs pixels */
    sim_render_t *render;
    size_t frame_bytes; /* N x N x 3 */
    unsigned char *img; /* (steps+1) frames with --record, else one */
    double render_s;    /* wall time spent rendering */
    unsigned long frames;
} sim_run_t;

static void sleep_until(double t_s)
{
    struct timespec ts = {.tv_sec = (time_t)t_s,
                          .tv_nsec = (long)((t_s - (double)(time_t)t_s) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !interrupted)
        ;
}

static void clear_progress(sim_run_t *r)
{
    if (r->progress)
        fputs("\r\033[K", stderr);
}

static void show_progress(sim_run_t *r, long ep, int t, double ret)
{
    double now = tool_now_s();
    if (!r->progress || now - r->progress_t < 0.2)
        return;
    r->progress_t = now;
    fprintf(stderr, "\r\033[K%s: episode %ld/%ld step %d/%d return %.1f", r->o->task->name,
            ep + 1, r->o->episodes, t + 1, r->steps, ret);
    if (r->ep_latency.n > 0)
        fprintf(stderr, " latency %.1f ms", r->ep_latency.v[r->ep_latency.n - 1]);
    fflush(stderr);
}

static void csv_header(sim_run_t *r)
{
    fprintf(r->csv, "episode,step,time_s");
    for (int i = 0; i < r->obs_dim; i++)
        fprintf(r->csv, ",obs_%d", i);
    for (int i = 0; i < r->act_dim; i++)
        fprintf(r->csv, ",action_%d", i);
    fprintf(r->csv, ",reward,latency_ms,iterations,predicted_return,deadline_cut,fallback,"
                    "model_version\n");
}

static void csv_row(sim_run_t *r, long ep, int t, const sim_decision_t *dec)
{
    const float *o = r->obs + (size_t)t * r->obs_dim, *a = r->act + (size_t)t * r->act_dim;
    fprintf(r->csv, "%ld,%d,%.3f", ep + 1, t, t * r->period_s);
    for (int i = 0; i < r->obs_dim; i++)
        fprintf(r->csv, ",%.6g", o[i]);
    for (int i = 0; i < r->act_dim; i++)
        fprintf(r->csv, ",%.6g", a[i]);
    fprintf(r->csv, ",%.6g,%.3f,%u,%.6g,%d,%d,%llu\n", r->rew[t], dec->latency_ms,
            dec->iterations, dec->predicted_return, dec->deadline_cut, dec->fallback,
            (unsigned long long)dec->model_version);
}

/* Why the policy failed, as an exit status. */
static int policy_failed(sim_run_t *r, int rc)
{
    clear_progress(r);
    if (rc == SIM_POLICY_EBADACTION) {
        fprintf(stderr, "%s: mpcd answered with a bad action (expected %d finite values)\n",
                prog, r->act_dim);
        return TOOL_EXIT_REFUSED;
    }
    return tool_call_failed(prog, "step", r->policy.client, rc);
}

/* Counts one mpcd reply (nothing here allocates: ep_latency has room for an episode). */
static void count_reply(sim_run_t *r, const sim_decision_t *dec)
{
    latency_add(&r->ep_latency, dec->latency_ms);
    r->decisions++;
    r->late += dec->latency_ms > r->period_s * 1e3;
    r->misses += r->o->deadline_ms > 0 && dec->latency_ms > r->o->deadline_ms;
    r->deadline_cuts += dec->deadline_cut;
    r->fallbacks += dec->fallback;
    r->iterations += dec->iterations;
}

/* Before step t's request: the delay to announce, and with --follow or --drop the actions
 * that will really be in force until its reply takes effect (they may differ from what
 * mpcd returned for them: a lost reply, a plan followed on). */
static void ask_ahead(sim_run_t *r, int t)
{
    const options_t *o = r->o;
    sim_policy_t *p = &r->policy;
    p->delay_steps = o->uncompensated ? 0 : (uint32_t)o->delay_steps;
    p->n_applied = 0;
    if (p->delay_steps > 0 && (o->follow || o->drop > 0)) {
        sim_timeline_catch_up(&r->timeline, t * r->period_s); /* a reply due just now */
        sim_timeline_ahead(&r->timeline, t * r->period_s, r->period_s, (int)o->delay_steps,
                           r->act_dim, r->ahead);
        p->applied = r->ahead;
        p->n_applied = (size_t)o->delay_steps * r->act_dim;
        r->applied_sent++;
    }
}

/* Control step t with physics that runs on: the reply of this step arrives after its
 * latency (--no-wait) and takes effect delay_steps later; each physics step applies the
 * action in force then. act receives the last one applied (what the step recorded). */
static double run_on(sim_run_t *r, int t, const sim_decision_t *dec, float *act, float *obs)
{
    const options_t *o = r->o;
    const int repeat = o->task->action_repeat;
    const double dt = r->period_s / repeat, t0 = t * r->period_s;
    if (o->drop > 0 && sim_rng_unit(&r->drop_rng) < o->drop) {
        r->dropped++;
    } else {
        /* A plan takes effect when it is due (delay_steps later) or, if it comes later
         * than that, when it arrives: its rows are timed from there. */
        double wait = o->no_wait ? fmin(dec->latency_ms * 1e-3, r->period_s) : 0.0;
        double due = t0 + o->delay_steps * r->period_s;
        sim_timeline_expect(&r->timeline, &r->policy.reply, t0 + wait, fmax(due, t0 + wait));
    }
    double reward = 0.0;
    for (int k = 0; k < repeat; k++) {
        sim_timeline_action(&r->timeline, (t * repeat + k) * dt, act);
        reward += sim_env_substep(r->env, act);
    }
    sim_env_observe(r->env, obs);
    return reward;
}

/* Renders observation t of episode ep (0: after reset) into its place in r->img and,
 * with --save-frames, writes it as a picture. */
static int render_obs(sim_run_t *r, long ep, int t)
{
    const options_t *o = r->o;
    unsigned char *rgb = r->img + (o->record ? (size_t)t * r->frame_bytes : 0);
    double t0 = tool_now_s();
    int rc = sim_render_frame(r->render, sim_env_world(r->env)->d, rgb);
    r->render_s += tool_now_s() - t0;
    r->frames++;
    if (rc < 0) {
        clear_progress(r);
        fprintf(stderr, "%s: --obs pixels: rendering failed: %s\n", prog, strerror(-rc));
        return SIM_EXIT_FAILED;
    }
    if (o->save_frames) {
        char path[4096], err[4200];
        snprintf(path, sizeof(path), "%s/%s-e%03ld-t%04d.ppm", o->save_frames, o->task->name,
                 ep + 1, t);
        int n = (int)o->image_size;
        if (sim_frame_write_ppm(path, rgb, n, n, err, sizeof(err)) < 0) {
            clear_progress(r);
            fprintf(stderr, "%s: --save-frames: %s\n", prog, err);
            return SIM_EXIT_FAILED;
        }
    }
    return TOOL_EXIT_OK;
}

static int run_episode(sim_run_t *r, long ep, double *ret)
{
    const options_t *o = r->o;
    bool mpcd = o->policy == SIM_POLICY_MPCD;
    sim_env_reset(r->env, &r->env_rng, r->obs);
    int rc;
    if (o->pixels && (rc = render_obs(r, ep, 0)) != TOOL_EXIT_OK)
        return rc;
    if (timed(o))
        sim_timeline_reset(&r->timeline);
    r->ep_latency.n = 0;
    float prev_reward = 0.0f;
    double next = tool_now_s();
    *ret = 0.0;
    for (int t = 0; t < r->steps; t++) {
        if (interrupted)
            return SIM_EXIT_INTERRUPTED;
        if (o->realtime)
            sleep_until(next);
        float *obs = r->obs + (size_t)t * r->obs_dim, *act = r->act + (size_t)t * r->act_dim;
        sim_decision_t dec;
        if (timed(o))
            ask_ahead(r, t);
        if (o->pixels) /* mpcd's pixel model sees image t (render_obs) */
            r->policy.image = r->img + (o->record ? (size_t)t * r->frame_bytes : 0);
        rc = sim_policy_act(&r->policy, obs, r->obs_dim, prev_reward, t == 0, act, &dec);
        if (rc < 0)
            return interrupted ? SIM_EXIT_INTERRUPTED : policy_failed(r, rc);
        if (mpcd)
            count_reply(r, &dec);
        double reward = timed(o) ? run_on(r, t, &dec, act, obs + r->obs_dim)
                                 : sim_env_step(r->env, act, obs + r->obs_dim);
        r->rew[t] = (float)reward;
        *ret += reward;
        if (o->pixels && (rc = render_obs(r, ep, t + 1)) != TOOL_EXIT_OK)
            return rc;
        prev_reward = (float)reward;
        if (r->csv)
            csv_row(r, ep, t, &dec);
        show_progress(r, ep, t, *ret);
        if (o->realtime) {
            /* Behind by more than a period after a late reply: restart the schedule. */
            next += r->period_s;
            double now = tool_now_s();
            if (now > next + r->period_s)
                next = now;
        }
    }
    return TOOL_EXIT_OK;
}

static int record_episode(sim_run_t *r, char *path, size_t pathlen)
{
    episode_t ep = {.task = r->o->task->name,
                    .steps = (size_t)r->steps,
                    .obs_dim = (size_t)r->obs_dim,
                    .act_dim = (size_t)r->act_dim,
                    .observation = r->obs,
                    .action = r->act,
                    .reward = r->rew};
    if (r->o->pixels) {
        ep.image = r->img;
        ep.image_height = ep.image_width = (size_t)r->o->image_size;
        ep.image_channels = 3;
    }
    char err[512];
    if (episode_write(r->o->record, &ep, &r->seq, path, pathlen, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: --record: %s\n", prog, err);
        return SIM_EXIT_FAILED;
    }
    return TOOL_EXIT_OK;
}

static void print_latency(const char *what, latency_samples_t *s)
{
    latency_summary_t sum;
    latency_summarize(s, &sum);
    printf("%s p50 %.2f p90 %.2f p99 %.2f max %.2f ms", what, sum.p50, sum.p90, sum.p99,
           sum.max);
}

static void print_episode(sim_run_t *r, long ep, double ret, double wall_s, const char *file)
{
    clear_progress(r);
    printf("episode %ld/%ld: return %.2f  steps %d  wall %.2f s", ep + 1, r->o->episodes, ret,
           r->steps, wall_s);
    if (r->ep_latency.n > 0) {
        printf("  ");
        print_latency("latency", &r->ep_latency);
    }
    unsigned resumes = r->policy.client ? mpc_client_resumes(r->policy.client) : 0;
    if (resumes > r->resumes_seen)
        printf("  resumed %u time(s)", resumes - r->resumes_seen);
    r->resumes_seen = resumes;
    if (file)
        printf("  -> %s", file);
    printf("\n");
    fflush(stdout);
}

static void print_summary(sim_run_t *r)
{
    const options_t *o = r->o;
    if (r->done == 0)
        return;
    double mean = 0, var = 0, lo = INFINITY, hi = -INFINITY;
    for (long i = 0; i < r->done; i++) {
        mean += r->returns[i] / (double)r->done;
        lo = fmin(lo, r->returns[i]);
        hi = fmax(hi, r->returns[i]);
    }
    for (long i = 0; i < r->done; i++)
        var += (r->returns[i] - mean) * (r->returns[i] - mean) / (double)r->done;
    printf("%s, policy %s, %ld episode%s: return mean %.2f std %.2f min %.2f max %.2f\n",
           o->task->name, sim_policy_name(o->policy), r->done, r->done == 1 ? "" : "s", mean,
           sqrt(var), lo, hi);
    if (r->frames > 0)
        printf("rendered %lu frames of %ldx%ld from camera '%s': %.2f ms per frame (%s)\n",
               r->frames, o->image_size, o->image_size, o->task->camera,
               r->render_s * 1e3 / (double)r->frames, sim_render_describe(r->render));
    if (r->decisions == 0)
        return;
    printf("replies: %lu, ", r->decisions);
    print_latency("latency", &r->latency);
    printf("\nlate replies (> control period %.0f ms): %lu%s", r->period_s * 1e3, r->late,
           o->realtime ? " (paced in real time)" : "");
    if (o->deadline_ms > 0)
        printf(", deadline misses (> %.0f ms): %lu", o->deadline_ms, r->misses);
    printf("\nplans: mean iterations %.1f, deadline cuts %lu, fallbacks %lu\n",
           (double)r->iterations / (double)r->decisions, r->deadline_cuts, r->fallbacks);
    printf("resumed %u time(s)\n", mpc_client_resumes(r->policy.client));
    if (timed(o))
        printf("physics ran on:%s%s delay %ld step%s (%s), replies dropped %lu, physics steps "
               "on a plan's later rows %lu, past its end %lu, steps sent with "
               "applied_actions %lu\n",
               o->no_wait ? " no-wait," : "", o->follow ? " following plans," : "",
               o->delay_steps, o->delay_steps == 1 ? "" : "s",
               o->delay_steps == 0 ? "none"
               : o->uncompensated  ? "uncompensated"
                                   : "compensated",
               r->dropped, r->timeline.later_rows, r->timeline.past_end, r->applied_sent);
}

static int run_all(sim_run_t *r)
{
    for (long ep = 0; ep < r->o->episodes; ep++) {
        double t0 = tool_now_s(), ret;
        int rc = run_episode(r, ep, &ret);
        if (rc != TOOL_EXIT_OK)
            return rc;
        char path[4096];
        if (r->o->record && (rc = record_episode(r, path, sizeof(path))) != TOOL_EXIT_OK)
            return rc;
        print_episode(r, ep, ret, tool_now_s() - t0, r->o->record ? path : NULL);
        if (latency_merge(&r->latency, &r->ep_latency) < 0) {
            fprintf(stderr, "%s: out of memory\n", prog);
            return SIM_EXIT_FAILED;
        }
        r->returns[r->done++] = ret;
    }
    return TOOL_EXIT_OK;
}

/* The daemon's session: connect, Hello, check sizes and control period. */
static int open_daemon(sim_run_t *r)
{
    const options_t *o = r->o;
    int rc = tool_connect(prog, o->connect, (int)o->timeout_ms, &r->policy.client);
    if (rc != TOOL_EXIT_OK)
        return rc;
    if (o->no_resume)
        mpc_client_set_resume(r->policy.client, &(mpc_client_resume_t){.attempts = 1});
    char name[64], why[256];
    snprintf(name, sizeof(name), "mpc-sim/%s", o->task->name);
    rc = sim_policy_hello(&r->policy, name, r->obs_dim, why, sizeof(why));
    if (rc == SIM_POLICY_EBADACTION) {
        fprintf(stderr, "%s: mpcd cannot control %s: %s\n", prog, o->task->name, why);
        return TOOL_EXIT_REFUSED;
    }
    if (rc < 0)
        return tool_call_failed(prog, "hello", r->policy.client, rc);
    const mpc_client_welcome_t *w = &r->policy.welcome;
    if (w->control_period_s > 0 && fabs(w->control_period_s - r->period_s) > 1e-6)
        fprintf(stderr,
                "%s: warning: model '%s' was trained for a control period of %g s; "
                "%s steps every %g s\n",
                prog, w->model_name, w->control_period_s, o->task->name, r->period_s);
    for (int i = 0; i < r->act_dim; i++)
        if (w->action_low[i] != (float)r->low[i] || w->action_high[i] != (float)r->high[i])
            fprintf(stderr,
                    "%s: warning: model's action %d bounds [%g, %g] differ from the task's "
                    "[%g, %g]; actions are clipped to the task's\n",
                    prog, i, w->action_low[i], w->action_high[i], r->low[i], r->high[i]);
    fprintf(stderr, "%s: session %llu with model '%s' version %llu\n", prog,
            (unsigned long long)w->session_id, w->model_name,
            (unsigned long long)w->model_version);
    return TOOL_EXIT_OK;
}

static int prepare(sim_run_t *r, const options_t *o)
{
    char err[1024];
    r->o = o;
    if (sim_env_create(o->task, &r->env, err, (int)sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return SIM_EXIT_FAILED;
    }
    r->obs_dim = o->task->obs_dim;
    r->act_dim = o->task->act_dim;
    r->period_s = sim_env_control_period(r->env);
    r->steps = o->max_steps > 0 ? (int)o->max_steps : sim_env_episode_steps(r->env);
    for (int i = 0; i < r->act_dim; i++)
        sim_env_action_bounds(r->env, i, &r->low[i], &r->high[i]);
    sim_rng_seed(&r->env_rng, (uint64_t)o->seed, 1);
    r->policy = (sim_policy_t){.kind = o->policy,
                               .act_dim = r->act_dim,
                               .low = r->low,
                               .high = r->high,
                               .explore = o->explore,
                               .deadline_us = (uint32_t)lround(o->deadline_ms * 1000)};
    sim_rng_seed(&r->policy.rng, (uint64_t)o->seed, 2);
    sim_rng_t session_rng;
    sim_rng_seed(&session_rng, (uint64_t)o->seed, 4);
    r->policy.session_seed = sim_rng_next(&session_rng) | 1; /* never 0: "daemon picks" */
    size_t steps = (size_t)r->steps;
    r->obs = calloc((steps + 1) * (size_t)r->obs_dim, sizeof(float));
    r->act = calloc(steps * (size_t)r->act_dim, sizeof(float));
    r->rew = calloc(steps, sizeof(float));
    r->returns = calloc((size_t)o->episodes, sizeof(double));
    r->ep_latency.v = malloc(steps * sizeof(double));
    r->ep_latency.cap = steps;
    if (timed(o)) {
        sim_rng_seed(&r->drop_rng, (uint64_t)o->seed, 3);
        r->ahead = calloc((size_t)o->delay_steps * r->act_dim + 1, sizeof(float));
        if (sim_timeline_init(&r->timeline, r->act_dim, (int)o->delay_steps, o->follow) < 0)
            r->ahead = (free(r->ahead), NULL);
    }
    if (!r->obs || !r->act || !r->rew || !r->returns || !r->ep_latency.v ||
        (timed(o) && !r->ahead)) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return SIM_EXIT_FAILED;
    }
    if (o->pixels) {
        /* The task's camera (dm_control's camera 0); the model draws as dm_control's. */
        const mjModel *m = sim_env_world(r->env)->m;
        int n = (int)o->image_size;
        int rc = sim_render_create(m, mj_name2id(m, mjOBJ_CAMERA, o->task->camera), n, n,
                                   &r->render, err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "%s: --obs pixels: %s\n", prog, err);
            return SIM_EXIT_FAILED;
        }
        r->frame_bytes = (size_t)n * (size_t)n * 3;
        if (o->policy == SIM_POLICY_MPCD && !o->send_state)
            r->policy.image_side = n;
        if ((r->img = malloc(r->frame_bytes * (o->record ? steps + 1 : 1))) == NULL) {
            fprintf(stderr, "%s: out of memory\n", prog);
            return SIM_EXIT_FAILED;
        }
    }
    if (o->save_frames && mkdir(o->save_frames, 0777) < 0 && errno != EEXIST) {
        fprintf(stderr, "%s: --save-frames: cannot create %s: %s\n", prog, o->save_frames,
                strerror(errno));
        return SIM_EXIT_FAILED;
    }
    if (o->record && mkdir(o->record, 0777) < 0 && errno != EEXIST) {
        fprintf(stderr, "%s: --record: cannot create %s: %s\n", prog, o->record,
                strerror(errno));
        return SIM_EXIT_FAILED;
    }
    if (o->csv) {
        if ((r->csv = fopen(o->csv, "w")) == NULL) {
            fprintf(stderr, "%s: --csv: cannot open %s: %s\n", prog, o->csv, strerror(errno));
            return SIM_EXIT_FAILED;
        }
        csv_header(r);
    }
    r->progress = !o->quiet && isatty(STDERR_FILENO);
    if (o->policy == SIM_POLICY_MPCD)
        return open_daemon(r);
    return TOOL_EXIT_OK;
}

static int release(sim_run_t *r, int rc)
{
    if (r->csv && fclose(r->csv) != 0 && rc == TOOL_EXIT_OK) {
        fprintf(stderr, "%s: --csv: %s\n", prog, strerror(errno));
        rc = SIM_EXIT_FAILED;
    }
    mpc_client_destroy(r->policy.client);
    sim_env_destroy(r->env);
    free(r->obs);
    free(r->act);
    free(r->rew);
    free(r->returns);
    latency_free(&r->ep_latency);
    latency_free(&r->latency);
    sim_timeline_free(&r->timeline);
    free(r->ahead);
    sim_render_destroy(r->render);
    free(r->img);
    return rc;
}

int main(int argc, char **argv)
{
    options_t o;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0)
        return rc;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    sim_run_t r = {0};
    rc = prepare(&r, &o);
    if (rc == TOOL_EXIT_OK) {
        rc = run_all(&r);
        clear_progress(&r);
        if (rc == SIM_EXIT_INTERRUPTED)
            fprintf(stderr, "%s: interrupted; the unfinished episode is not recorded\n", prog);
        print_summary(&r);
        if (sim_env_warnings() > 0)
            fprintf(stderr, "%s: %lu MuJoCo warning%s (see above)\n", prog, sim_env_warnings(),
                    sim_env_warnings() == 1 ? "" : "s");
    }
    return release(&r, rc);
}
