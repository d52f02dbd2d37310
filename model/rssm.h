/*
 * rssm.h: librssm, the Recurrent State Space Model runtime (PlaNet / Dreamer): its own
 * packed-weight AVX2 kernel where the CPU has one, OpenBLAS otherwise.
 *
 * A model is loaded from an `mpc-rssm` safetensors file (model/FORMAT.md), validated
 * completely, and then immutable: one rssm_model_t may be shared by any number of threads.
 * Per-call scratch memory comes from a caller-owned workspace sized once per model, so the
 * control path never allocates.
 *
 * The math follows the PyTorch reference in model/train/mpc_rssm/rssm.py exactly:
 *   normalise   o_n = (o - obs_mean) / obs_std
 *   encoder     e   = act(W_e1 act(W_e0 o_n + b) + b)                       [embed]
 *   (image models: x / 255 - 0.5, then PlaNet's 4 convolutions, kernel 4, stride 2, and
 *    e = act(W_out flatten(conv(x)) + b); see rssm_observe_image)
 *   transition  x   = act(W_in [z, a] + b);  h' = GRUCell(x, h)             [deter]
 *   prior       (mean, std) of p(z | h'):  W_p1 act(W_p0 h' + b) + b -> split, softplus+min
 *   posterior   (mean, std) of q(z | h', e): W_q1 act(W_q0 [h', e] + b) + b -> same
 *   reward      r = W_r2 act(W_r1 act(W_r0 [h, z] + b) + b) + b             [1]
 *   value       same shape as reward (optional)
 *   decoder     normalised observation from [h, z] (optional)
 * All matrices are row-major [out, in] like torch.nn.Linear.
 */
#ifndef MPC_RSSM_H
#define MPC_RSSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Errors: 0 or one of these negative codes; loaders also fill a message.
 *
 * librssm's codes have a range of their own, -5001..-5099, below every
 * negative errno and every libuv error (-1..-4095), so code that returns "a negative errno
 * or an rssm_err_t" (the daemon's model loads) never gives one number two meanings.
 * proto/framing.h's FRAME_E* take the next range, -5101..-5199. */
#define RSSM_ERRNO_MAP(XX)                                                                     \
    XX(IO, -5001, "cannot read the model file")                                                \
    XX(FORMAT, -5002, "not a valid safetensors container")                                     \
    XX(VERSION, -5003, "unsupported format version")                                           \
    XX(METADATA, -5004, "missing or inconsistent metadata")                                    \
    XX(TENSOR, -5005, "missing, misplaced or misshapen tensor")                                \
    XX(VALUE, -5006, "non-finite or out-of-range value")                                       \
    XX(NOMEM, -5007, "out of memory")                                                          \
    XX(INVALID, -5008, "invalid argument")

typedef enum {
    RSSM_OK = 0,
#define XX(name, val, msg) RSSM_E##name = val,
    RSSM_ERRNO_MAP(XX)
#undef XX
} rssm_err_t;

/* The message of an rssm_err_t, of a negative errno (strerror), or "unknown error". */
const char *rssm_strerror(int err);

typedef enum { RSSM_ACT_RELU = 0, RSSM_ACT_ELU = 1 } rssm_activation_t;

typedef struct rssm_dims {
    int obs;    /* O: observation size */
    int action; /* A: action size */
    int deter;  /* D: GRU state size */
    int stoch;  /* S: stochastic latent size */
    int hidden; /* H: MLP width */
    int embed;  /* E: observation embedding size */
} rssm_dims_t;

typedef struct rssm_info {
    rssm_dims_t dims;
    rssm_activation_t activation;
    float min_std;
    bool has_value;
    bool has_decoder;
    const float *action_low;  /* [A] */
    const float *action_high; /* [A] */
    /* [O] observation normalisation, o_n = (o - obs_mean) / obs_std, obs_std > 0. An image
     * model has no such tensors; its fixed x / 255 - 0.5 is given here as 127.5 and 255 in
     * every element, so code written for vector models keeps working. */
    const float *obs_mean;
    const float *obs_std;
    /* An image model (format 1.1, obs_type "image") has image_channels > 0: its observation
     * is image_height x image_width x image_channels uint8 (HWC: rows top first, channels
     * interleaved; dims.obs = their product) and goes through rssm_observe_image.
     * conv_depth is d, the first convolution's channels (PlaNet: 32). All 0 for vector
     * models. */
    int image_height, image_width, image_channels;
    int conv_depth;
    const char *task; /* e.g. "cartpole-swingup" */
    const char *name; /* model name (metadata "name", else task) */
    double control_period_s;
    double discount;
    int format_major, format_minor;
} rssm_info_t;

typedef struct rssm_model rssm_model_t;

/* Loads and validates a model file (mmap). On failure returns a negative rssm_err_t, sets
 * *out to NULL and writes a message naming the field or tensor into err. */
int rssm_load(const char *path, rssm_model_t **out, char *err, size_t errlen);

/* rssm_load_fd flags. OPAQUE: the file was named by someone who may not read it (a
 * client's Reload); unless it looks like an mpc-rssm file (rssm_looks_like_model), the
 * message says only that it is not one, so no byte of it reaches the message. */
#define RSSM_LOAD_OPAQUE 1u

/* Same from an open file descriptor (not closed; name is used in messages only). The file
 * must be a regular file of at most max_bytes (0: no limit), checked before it is mapped. */
int rssm_load_fd(int fd, const char *name, size_t max_bytes, unsigned flags, rssm_model_t **out,
                 char *err, size_t errlen);

/* True when data starts like an mpc-rssm file: a safetensors header of sane length whose
 * JSON parses and whose __metadata__ says format "mpc-rssm". Lets a caller that loads
 * files on someone else's behalf tell "a broken model" (detailed messages are useful)
 * from "not a model at all" (messages could echo the file's bytes). */
bool rssm_looks_like_model(const void *data, size_t size);

/* Same from a memory buffer (copied); used by tests and the fuzzer. */
int rssm_load_buffer(const void *data, size_t size, rssm_model_t **out, char *err,
                     size_t errlen);

/* Frees the model; accepts NULL. The caller guarantees no thread still uses it. */
void rssm_destroy(rssm_model_t *m);

const rssm_info_t *rssm_info(const rssm_model_t *m);

/* Raw metadata value for a key (the JSON string as stored), or NULL. */
const char *rssm_metadata(const rssm_model_t *m, const char *key);

/* Number of metadata entries and tensors, for listing (mpc-model info). */
int rssm_metadata_count(const rssm_model_t *m);
void rssm_metadata_at(const rssm_model_t *m, int i, const char **key, const char **value);
int rssm_tensor_count(const rssm_model_t *m);
/* name, rank, shape (up to 4 dims) of the i-th tensor in file order. */
void rssm_tensor_at(const rssm_model_t *m, int i, const char **name, int *rank, int shape[4]);

/* Total parameters, and FLOPs (multiply-add = 2) of one imagined step for one candidate:
 * transition + prior + reward (+ value). */
int64_t rssm_param_count(const rssm_model_t *m);
int64_t rssm_flops_per_imagine_step(const rssm_model_t *m);

/* Whether the model's layers run on librssm's packed-weight AVX2 kernel (else OpenBLAS;
 * MPC_RSSM_GEMM=blas at load time forces that). The kernel is fastest on batches whose
 * activations fit in L2; OpenBLAS prefers bigger ones. */
bool rssm_uses_kernel(const rssm_model_t *m);

/* ---- belief update (one client, one step) ---- */

/* Floats of workspace rssm_observe, rssm_observe_image and rssm_encode_image need. */
size_t rssm_observe_workspace(const rssm_model_t *m);

typedef struct rssm_observe_out {
    float *h;          /* [D] new deterministic state h' */
    float *prior_mean; /* [S] p(z | h') */
    float *prior_std;  /* [S] */
    float *post_mean;  /* [S] q(z | h', e(obs)) */
    float *post_std;   /* [S] */
} rssm_observe_out_t;

/* One filtering step from (h, z, a_prev) and the new raw observation obs [O].
 * h, z, a_prev may be all-zero for the first step of an episode. The caller picks the new
 * latent: z' = post_mean (mean) or post_mean + post_std * eps (sampled).
 * Output arrays must not alias the inputs. Returns 0 or RSSM_EINVALID (also for an image
 * model, which observes through rssm_observe_image). */
int rssm_observe(const rssm_model_t *m, const float *h, const float *z, const float *a_prev,
                 const float *obs, rssm_observe_out_t *out, float *ws);

/* The same step for an image model from its image [image_height * image_width *
 * image_channels] uint8, HWC, top row first (a framebuffer read flipped to top-first).
 * Returns 0, or RSSM_EINVALID for a NULL argument or a vector model. */
int rssm_observe_image(const rssm_model_t *m, const float *h, const float *z,
                       const float *a_prev, const uint8_t *image, rssm_observe_out_t *out,
                       float *ws);

/* The image encoder alone: embed [E] = e(image), the embedding rssm_observe_image feeds
 * the posterior (for tests and benchmarks). ws: rssm_observe_workspace(m) floats, not
 * aliasing embed. Returns 0, or RSSM_EINVALID for a NULL argument or a vector model. */
int rssm_encode_image(const rssm_model_t *m, const uint8_t *image, float *embed, float *ws);

/* ---- batched imagination (N candidates, for the planner) ---- */

/* Floats of workspace the batched calls need for batches of up to max_batch rows. */
size_t rssm_batch_workspace(const rssm_model_t *m, int max_batch);

/* Prior step for n rows: h [n, D], z [n, S], a [n, A] -> h_next [n, D], prior mean and std
 * [n, S] each. Allocates nothing. Outputs must not alias inputs. */
void rssm_imagine_batch(const rssm_model_t *m, int n, const float *h, const float *z,
                        const float *a, float *h_next, float *prior_mean, float *prior_std,
                        float *ws);

/* The same step when every row starts from one state: h0 [D] and z0 [S] (a planner's
 * first step). h0's share of the GRU (W_hh h0, a third of the step) is computed once per
 * pass of up to 64 rows instead of once per row. */
void rssm_imagine_batch_shared(const rssm_model_t *m, int n, const float *h0, const float *z0,
                               const float *a, float *h_next, float *prior_mean,
                               float *prior_std, float *ws);

/* Reward head for n rows of (h [n, D], z [n, S]) -> reward [n]. */
void rssm_reward_batch(const rssm_model_t *m, int n, const float *h, const float *z,
                       float *reward, float *ws);

/* Value head (only when has_value) -> value [n]. */
void rssm_value_batch(const rssm_model_t *m, int n, const float *h, const float *z,
                      float *value, float *ws);

/* Decoder (only when has_decoder) -> raw (de-normalised) observation [n, O]. */
void rssm_decode_batch(const rssm_model_t *m, int n, const float *h, const float *z, float *obs,
                       float *ws);

/* KL(q || p) between diagonal Gaussians of size s, in nats (summed over dimensions). */
float rssm_kl_diag(const float *q_mean, const float *q_std, const float *p_mean,
                   const float *p_std, int s);

#endif
