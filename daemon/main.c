/*
 * main.c: mpcd's entry point: settings (config.c), --help / --check-config, then the
 * server (server.c) until SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "registry.h"
#include "server.h"

/* --check-config: settings, addresses, and the model file if one is set. */
static int check_config(const mpcd_config_t *cfg)
{
    char err[768];
    if (cfg->model) {
        registry_model_t *m;
        registry_source_t src = {cfg->model, NULL, (size_t)cfg->max_model_mb << 20};
        if (registry_model_load(&src, &cfg->planner, 1, NULL, &m, err, sizeof err)) {
            fprintf(stderr, "mpcd: model: %s\n", err);
            return 2;
        }
        char shape[64];
        fprintf(stderr, "mpcd: model %s: %s, %s, action %d (ok)\n", cfg->model, m->info->name,
                registry_obs_shape(m->info, shape, sizeof shape), m->info->dims.action);
        registry_model_free(m);
    }
    config_print(stdout, cfg);
    fprintf(stderr, "mpcd: configuration ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    mpcd_config_t cfg;
    config_action_t action;
    char err[768];
    const char *prog = "mpcd";
    if (config_parse_args(&cfg, argc, argv, &action, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        config_free(&cfg);
        return 2;
    }
    int rc = 0;
    switch (action) {
    case CONFIG_HELP:
        config_print_help(stdout, prog);
        goto out;
    case CONFIG_VERSION:
        printf("mpcd %s\n", MPCD_VERSION);
        goto out;
    default:
        break;
    }
    if (config_validate(&cfg, err, sizeof err) ||
        config_read_token_files(&cfg, stderr, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        rc = 2;
        goto out;
    }
    if (action == CONFIG_CHECK) {
        rc = check_config(&cfg);
        goto out;
    }
    mpcd_log_set_level(cfg.log_level);
    /* A peer that vanished must cost an EPIPE on its connection, not the daemon. */
    signal(SIGPIPE, SIG_IGN);
    server_t *s;
    if (server_create(&cfg, &s, err, sizeof err)) {
        mpcd_log(MPCD_LOG_ERR, "cannot start: %s", err);
        rc = 1;
        goto out;
    }
    rc = server_run(s) ? 1 : 0;
    server_destroy(s);
out:
    config_free(&cfg);
    return rc;
}
