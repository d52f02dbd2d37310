/*
 * robot_loop.c: a robot's 500 Hz control loop driven by mpcd, without ever waiting on the
 * network (libmpcclient's asynchronous steps and follower; clients/README.md).
 *
 * A motor controller ticks every 2 ms; the model plans at its own, slower control period
 * (Welcome.control_period_s, e.g. 80 ms). So every tick the loop:
 *   1. takes the newest reply that has arrived, if any (mpc_client_step_poll, timeout 0),
 *      and hands its plan to the follower, timed from when its observation was taken;
 *   2. once per control period, sends the robot's observation (mpc_client_step_send)
 *      and goes on at once: the reply comes a few ticks later;
 *   3. applies the follower's action for this very moment (the row of the newest plan in
 *      force) and lets the robot move for one tick.
 * With --delay-steps K the daemon plans for K control periods after the observation (the
 * time the request, the planning and the reply take); the plan then starts K periods
 * after the observation, and until then the previous plan goes on. A plan never starts
 * before it arrives: with K = 0 the action in force holds until the reply comes.
 *
 * The "robot" is a stand-in, not cartpole physics: one point mass per action dimension
 * (a damped double integrator) integrated here, whose observation is its positions and
 * velocities, zero-padded to the model's observation size. Against the shipped cartpole
 * model the actions mean nothing for it; the loop's plumbing and timing are the point.
 *
 *   mpc-robot-example --connect tcp://127.0.0.1:7391 --seconds 5 --delay-steps 1
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpcclient.h"

#define TICK_S        0.002 /* 500 Hz */
#define MAX_IN_FLIGHT 4     /* a stalled daemon gets no pile of stale observations */
#define SENT_MAX      16    /* observation times remembered (> MAX_IN_FLIGHT) */
#define MAX_DELAY     100

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sleeps until the monotonic clock reads t (seconds). */
static void sleep_until(double t)
{
    struct timespec ts = {.tv_sec = (time_t)t};
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: mpc-robot-example [OPTIONS]\n"
            "A 500 Hz robot loop (a stand-in point mass) that streams observations to mpcd\n"
            "and follows the returned plans without waiting on the network.\n"
            "  --connect ADDR     mpcd's address (default %s)\n"
            "  --seconds S        how long to run (default 5)\n"
            "  --delay-steps K    plan K control periods ahead of each observation (0)\n"
            "  --quiet            no progress line each second\n"
            "  --help             this text\n"
            "Exit status: 0 ok, 1 the daemon refused or the model does not fit, 2 bad command\n"
            "line, 3 daemon unreachable or connection lost.\n",
            MPC_CLIENT_DEFAULT_ADDRESS);
}

int main(int argc, char **argv)
{
    const char *address = NULL;
    double seconds = 5.0;
    long delay = 0;
    bool quiet = false;
    static const struct option opts[] = {{"connect", required_argument, NULL, 'c'},
                                         {"seconds", required_argument, NULL, 's'},
                                         {"delay-steps", required_argument, NULL, 'd'},
                                         {"quiet", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int o; (o = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        char *end = NULL;
        bool bad = false;
        if (o == 'c') {
            address = optarg;
        } else if (o == 's') {
            seconds = strtod(optarg, &end);
            bad = !(seconds > 0);
        } else if (o == 'd') {
            delay = strtol(optarg, &end, 10);
            bad = delay < 0 || delay > MAX_DELAY;
        } else if (o == 'q') {
            quiet = true;
        } else {
            usage(o == 'h' ? stdout : stderr);
            return o == 'h' ? 0 : 2;
        }
        if (bad || (end != NULL && (end == optarg || *end != '\0'))) {
            fprintf(stderr, "mpc-robot-example: bad value '%s' for --%s\n", optarg,
                    o == 's' ? "seconds" : "delay-steps");
            return 2;
        }
    }

    /* Connect and open a session: the Welcome says the model's sizes and control period. */
    mpc_client_t *c;
    mpc_client_welcome_t w;
    if (mpc_client_create(&c) < 0)
        return 3;
    mpc_client_set_timeout(c, 2000);
    mpc_client_hello_t hello = {.client_name = "mpc-robot-example"};
    int rc = mpc_client_connect(c, address, 0);
    if (rc == 0)
        rc = mpc_client_hello_with(c, &hello, &w);
    if (rc < 0) {
        fprintf(stderr, "mpc-robot-example: %s\n", mpc_client_errmsg(c));
        mpc_client_destroy(c);
        return rc == MPC_CLIENT_EDAEMON ? 1 : 3;
    }
    size_t n_act = w.action_size, n_obs = w.observation_size;
    if (n_act == 0 || n_obs < 2 * n_act || !(w.control_period_s > 0)) {
        fprintf(stderr,
                "mpc-robot-example: model %s has observation %zu, action %zu, period %g s; "
                "the stand-in robot needs an observation of at least 2 x action floats\n",
                w.model_name, n_obs, n_act, w.control_period_s);
        mpc_client_destroy(c);
        return 1;
    }
    printf("model %s: observation %zu, action %zu, control period %.0f ms, delay %ld\n",
           w.model_name, n_obs, n_act, 1e3 * w.control_period_s, delay);

    /* Everything is allocated before the loop, nothing in it. The follower holds the
     * plans that may still be in force: K waiting to start + 2. */
    mpc_follower_t *follower = NULL;
    float *obs = calloc(n_obs, sizeof(float));
    if (obs == NULL || mpc_follower_create(n_act, (size_t)delay + 2, NULL, &follower) < 0) {
        fprintf(stderr, "mpc-robot-example: out of memory\n");
        return 1;
    }
    float pos[MPC_CLIENT_MAX_ACTION] = {0}, vel[MPC_CLIENT_MAX_ACTION] = {0};
    float act[MPC_CLIENT_MAX_ACTION];
    double sent_at[SENT_MAX];  /* observation time of step seq % SENT_MAX */
    mpc_client_action_t reply; /* ~4 KiB, filled by each poll */
    unsigned long ticks = 0, sent = 0, replies = 0, dropped = 0, past_end = 0;
    unsigned long refused = 0, held_back = 0;
    double t0 = now_s(), next_obs = 0.0;
    rc = 0;

    for (double t = 0.0; t < seconds; t = (double)++ticks * TICK_S) {
        sleep_until(t0 + t); /* t: this tick's time, seconds since the loop started */

        /* 1. The newest reply, if one came: its plan starts K periods after its
         *    observation, or now if that has passed (with K = 0 always now: until a
         *    reply comes the action in force holds). */
        unsigned n_dropped = 0;
        rc = mpc_client_step_poll(c, 0, &reply, &n_dropped);
        dropped += n_dropped;
        if (rc == 0) {
            replies++;
            double step_s = reply.plan_step_s > 0 ? reply.plan_step_s : w.control_period_s;
            double due = sent_at[reply.seq % SENT_MAX] + (double)delay * step_s;
            double start = due > t ? due : t;
            mpc_follower_update(follower, &reply, start);
        } else if (rc == MPC_CLIENT_EDAEMON) {
            /* The daemon refused one step (e.g. OVERLOADED): the session goes on. */
            if (refused++ == 0)
                fprintf(stderr, "mpc-robot-example: %s\n", mpc_client_errmsg(c));
        } else if (rc != MPC_CLIENT_EAGAIN) {
            fprintf(stderr, "mpc-robot-example: %s\n", mpc_client_errmsg(c));
            break; /* the connection is lost: a real robot holds a safe action, reconnects */
        }
        rc = 0;

        /* 2. Once per control period: send the observation and go on without waiting (not
         * while the daemon still owes MAX_IN_FLIGHT replies: the plan in force goes on). */
        if (t >= next_obs && mpc_client_steps_in_flight(c) >= MAX_IN_FLIGHT) {
            held_back++;
            next_obs += w.control_period_s;
        } else if (t >= next_obs) {
            for (size_t i = 0; i < n_act; i++) {
                obs[i] = pos[i];
                obs[n_act + i] = vel[i];
            }
            mpc_client_step_t step = {.seq = sent,
                                      .observation = obs,
                                      .observation_size = n_obs,
                                      .reset = sent == 0,
                                      .delay_steps = (uint32_t)delay};
            sent_at[sent % SENT_MAX] = t;
            if ((rc = mpc_client_step_send(c, &step)) < 0) {
                fprintf(stderr, "mpc-robot-example: %s\n", mpc_client_errmsg(c));
                break;
            }
            sent++;
            next_obs += w.control_period_s;
        }

        /* 3. Apply the action in force now (zero-order hold within each plan row). */
        if (mpc_follower_action_at(follower, t, act) == MPC_FOLLOW_PAST_END)
            past_end++;
        for (size_t i = 0; i < n_act; i++) {
            vel[i] += (act[i] - 0.5f * vel[i]) * (float)TICK_S;
            pos[i] += vel[i] * (float)TICK_S;
        }
        if (!quiet && ticks % 500 == 0)
            printf("t=%4.1f s  pos[0]=%+7.3f  action[0]=%+6.3f  replies=%lu  in flight=%u\n", t,
                   pos[0], act[0], replies, mpc_client_steps_in_flight(c));
    }

    printf("ticks %lu, steps sent %lu, replies %lu, replies dropped %lu, ticks past the "
           "plan's end %lu\n",
           ticks, sent, replies, dropped, past_end);
    if (refused > 0 || held_back > 0)
        printf("steps refused by the daemon %lu, observations held back %lu\n", refused,
               held_back);
    free(obs);
    mpc_follower_destroy(follower);
    mpc_client_destroy(c);
    return rc < 0 ? 3 : refused > 0 ? 1 : 0;
}
