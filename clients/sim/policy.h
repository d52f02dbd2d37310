/*
 * policy.h: where mpc-sim's actions come from: uniform random, zero, or mpcd.
 *
 * The mpcd policy opens a session (Hello with the task's observation and action sizes,
 * checked against the model's; with --obs pixels observation size 0 and the image side,
 * checked against the pixel model's image shape), then sends one Step per control step with the
 * previous reward, the reset flag on an episode's first step and the optional deadline, and
 * measures the reply latency at the client. Exploration noise (Gaussian, std = scale *
 * half the action range, clipped to the bounds) is added here, after the policy, to any
 * policy's action.
 */
#ifndef MPC_SIM_POLICY_H
#define MPC_SIM_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "mpcclient.h"
#include "rng.h"

/* sim_policy_act: mpcd answered with an action of the wrong size or non-finite values. */
#define SIM_POLICY_EBADACTION (-100)

typedef enum { SIM_POLICY_RANDOM, SIM_POLICY_ZERO, SIM_POLICY_MPCD } sim_policy_kind_t;

typedef struct {
    sim_policy_kind_t kind;
    int act_dim;
    const double *low, *high; /* act_dim bounds */
    double explore;           /* noise scale; 0: none */
    sim_rng_t rng;            /* random actions and noise */
    /* mpcd only */
    mpc_client_t *client;
    uint32_t deadline_us;  /* 0: the daemon's default */
    uint64_t session_seed; /* Hello.seed: the daemon's draws follow --seed too */
    uint64_t seq;
    /* --obs pixels: the model observes image_side x image_side x 3 images, and each Step
     * sends `image` (set before sim_policy_act) instead of the observation vector */
    int image_side;
    const uint8_t *image;
    mpc_client_welcome_t welcome;
    /* sent with the next Step (delay compensation): Step.delay_steps, and applied_actions
     * when n_applied > 0 */
    uint32_t delay_steps;
    const float *applied;
    size_t n_applied;
    mpc_client_action_t reply; /* the last Action, with its plan */
} sim_policy_t;

/* What one decision cost and how it was made (mpcd fields stay 0 for other policies). */
typedef struct {
    double latency_ms; /* request sent to action received */
    uint32_t iterations;
    float predicted_return;
    bool deadline_cut, fallback;
    uint64_t model_version;
} sim_decision_t;

/* Parses "random", "zero" or "mpcd"; -1 for anything else. */
int sim_policy_parse(const char *text, sim_policy_kind_t *out);
const char *sim_policy_name(sim_policy_kind_t kind);

/* Opens the mpcd session on a connected client: Hello, then checks that the model's
 * observation and action sizes match the task (with image_side > 0: that it is a pixel
 * model of that image shape). Returns 0 or a libmpcclient error; size mismatches return
 * SIM_POLICY_EBADACTION with the reason in why. */
int sim_policy_hello(sim_policy_t *p, const char *client_name, int obs_dim, char *why,
                     size_t whylen);

/* Decides the action for obs (act_dim values into action, inside the bounds). For mpcd a
 * failed call returns the libmpcclient error (message in mpc_client_errmsg), and an action
 * of the wrong size or with non-finite values returns SIM_POLICY_EBADACTION. */
int sim_policy_act(sim_policy_t *p, const float *obs, int obs_dim, float prev_reward,
                   bool reset, float *action, sim_decision_t *dec);

#endif
