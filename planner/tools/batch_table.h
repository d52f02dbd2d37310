/*
 * batch_table.h: mpc-plan-bench's batching table (--batch-table).
 *
 * Answers one question: when K sessions each need a CEM iteration of J candidates on the
 * same model, is one imagined rollout of all K * J rows faster, per candidate-step, than K
 * rollouts of J rows one after another? Both sides run the same rollout code (the
 * planner's: per-block action sampling, then H steps of prior, latent sampling and reward,
 * blocks handed to a team of threads) and compute the same numbers.
 */
#ifndef MPC_BATCH_TABLE_H
#define MPC_BATCH_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "rssm.h"

typedef struct batch_table_config {
    int horizon;    /* imagined steps per candidate */
    int threads;    /* team size, the same for both sides */
    int block_rows; /* rows per librssm call, at most (0: the planner's automatic rule) */
    uint64_t seed;  /* of the session beliefs, Gaussians and noise */
} batch_table_config_t;

/* One cell of the table: K sessions of J candidates. */
typedef struct batch_table_row {
    int sessions;           /* K */
    int candidates;         /* J */
    int reps;               /* timed repetitions of each side */
    double sequential_cps;  /* candidate-steps per second, K rollouts of J rows */
    double batched_cps;     /* the same, one rollout of K * J rows */
    double ratio;           /* batched / sequential */
    double max_return_diff; /* largest |return| difference between the sides (a check) */
} batch_table_row_t;

/* Fills rows[nk * nj] (K-major) for every K in ks[nk] and J in js[nj]: a warm-up pass of
 * each side, then timed repetitions, alternating the sides, until each has at least 5 and
 * 0.5 s; each side's best (shortest) repetition is reported. Returns 0 or a negative
 * errno with err filled. */
int batch_table_run(const rssm_model_t *m, const batch_table_config_t *cfg, const int *ks,
                    int nk, const int *js, int nj, batch_table_row_t *rows, char *err,
                    size_t errlen);

#endif
