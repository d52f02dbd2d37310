/*
 * config.h: mpcd's settings, from one table of descriptors.
 *
 * Every setting is described once (name, section, type, bounds, default, help) in
 * config.c; that table drives the INI file parser (libinih), the command-line parser,
 * `--help` and `--check-config`. Defaults are written as text and parsed by the same code
 * as user input, so a default can never be a value the user could not type.
 *
 * Precedence: built-in defaults, then the INI file (--config FILE), then the command line.
 * A repeatable setting (listen) given on the command line replaces the file's values.
 */
#ifndef MPCD_CONFIG_H
#define MPCD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "planner.h"

#define CONFIG_MAX_LISTEN 16

typedef struct mpcd_config {
    /* [model] */
    char *model;             /* model file; NULL: start without one (not ready) */
    bool watch;              /* reload when the model file is replaced */
    char *model_dir;         /* clients' Reload paths stay beneath it; NULL: --model's dir */
    int64_t max_model_mb;    /* largest model file loaded */
    double reload_timeout_s; /* a load still running after this is abandoned */
    /* [server] */
    char *listen[CONFIG_MAX_LISTEN];
    int nlisten;
    char *status_listen; /* "HOST:PORT", or NULL when disabled ("none") */
    int max_connections;
    int64_t max_frame;     /* bytes */
    double idle_timeout_s; /* 0: never */
    int max_queued;        /* requests waiting per connection */
    int unix_mode;         /* permission bits of unix: sockets */
    char *auth_token;      /* control role; NULL: every client has it */
    char *auth_token_file; /* read into auth_token by config_read_token_files */
    char *admin_token;     /* admin role (Reload); NULL: only same-uid Unix peers */
    char *admin_token_file;
    int max_connections_per_peer;
    double hello_timeout_s;    /* close connections without a successful Hello; 0: never */
    int max_unsent_kb;         /* per-connection budget of replies not yet written */
    double drain_grace_s;      /* SIGTERM: serve open sessions this long, then hand over */
    double shutdown_timeout_s; /* stopping: longest wait for in-flight replies */
    /* [control] */
    double deadline_ms;    /* default per-step deadline */
    int workers;           /* planner worker threads; 0 = one per CPU */
    int min_iterations;    /* admission: CEM iterations every admitted plan must get */
    double max_load;       /* admission: fraction of the workers' time it may promise */
    double warm_up_ms;     /* workers spin this long before a paced session's next step */
    int history;           /* (observation, action) pairs kept for re-sync */
    bool posterior_sample; /* z ~ q(z|h,e) instead of its mean */
    uint64_t seed;         /* base of every session's RNG stream */
    /* [planner] */
    cem_config_t planner;
    double margin_ms; /* mirrored into planner.margin_s */
    /* [record] */
    char *record;                /* directory; NULL: off */
    int64_t record_max_mb;       /* disk cap for recorded episodes */
    int record_episodes_per_min; /* per session; more are not recorded */
    /* [log] */
    int log_level; /* syslog priority: 3 err .. 7 debug */
} mpcd_config_t;

/* What main() should do after parsing. */
typedef enum { CONFIG_RUN, CONFIG_HELP, CONFIG_VERSION, CONFIG_CHECK } config_action_t;

/* Fills every setting with its default. */
int config_defaults(mpcd_config_t *c);

/* Frees the strings a config holds; the struct itself is the caller's. */
void config_free(mpcd_config_t *c);

/* Reads an INI file into c. Returns 0, or -EINVAL/-ENOENT with "FILE:LINE: message"
 * in err. */
int config_load_file(mpcd_config_t *c, const char *path, char *err, size_t errlen);

/* Parses argv (defaults, then --config FILE, then the flags). Returns 0 and the action,
 * or -EINVAL with a message naming the option in err. */
int config_parse_args(mpcd_config_t *c, int argc, char **argv, config_action_t *action,
                      char *err, size_t errlen);

/* Checks cross-field rules (planner ranges, addresses). 0 or -EINVAL with err. */
int config_validate(const mpcd_config_t *c, char *err, size_t errlen);

/* Sets one setting by name from text, as the INI parser and the CLI do. */
int config_set(mpcd_config_t *c, const char *name, const char *value, char *err, size_t errlen);

/* Reads auth-token-file and admin-token-file (when set) into auth_token / admin_token:
 * the first line, surrounding whitespace removed, must be non-empty. Refuses a token given
 * both inline and as a file, and an admin token equal to the control token. Warnings (a
 * token file others can read) go to warn when not NULL. 0 or a negative errno with err. */
int config_read_token_files(mpcd_config_t *c, FILE *warn, char *err, size_t errlen);

/* Man-page style help generated from the table. */
void config_print_help(FILE *out, const char *prog);

/* The effective settings as an INI file that config_load_file reads back. */
void config_print(FILE *out, const mpcd_config_t *c);

#endif
